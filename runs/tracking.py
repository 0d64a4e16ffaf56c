"""Registering runs that already exist on a provider: one id (`track_run`) or many (`track_runs`)."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from django.db import IntegrityError, transaction

from providers.models import Provider
from runs.fingerprint import workflow_fingerprint
from runs.models import Origin, Run
from runs.workflow import caption, search_text

# One API call's ceiling: 1,000 ids are a single INSERT and a single SELECT.
MAX_TRACK_IDS = 1000
MAX_EXTERNAL_ID = 200
# Control (NUL, ESC, …) and format characters (zero-width spaces, right-to-left overrides): no provider's
# run id has them, and shown back in a page, a terminal or a spreadsheet they hide or disguise the id.
_UNPRINTABLE = frozenset({"Cc", "Cf"})
_SEPARATORS = re.compile(r"[\s,;]+")
_ID_HEADERS = ("external_id", "external id", "id", "prompt_id", "run_id")


@dataclass(frozen=True)
class TrackResult:
    """What happened to one id of a bulk registration: the run (new or already tracked) or why not."""

    external_id: str
    run_code: UUID | None = None
    created: bool = False
    error: str | None = None


def external_id_problem(external_id: str) -> str | None:
    """Why `external_id` cannot be a provider's run id, or None if it can."""
    if not external_id:
        return "is blank"
    if len(external_id) > MAX_EXTERNAL_ID:
        return f"is longer than {MAX_EXTERNAL_ID} characters"
    if any(c.isspace() or unicodedata.category(c) in _UNPRINTABLE for c in external_id):
        return "contains spaces or control characters"
    return None


def track_run(
    provider: Provider, external_id: str, *, origin: str = Origin.TRACKED, created_by=None, workflow=None
) -> tuple[Run, bool]:
    """Idempotent: the same (provider, external_id) returns the existing run. The run is due at once.

    `workflow`: the API-format graph the run ran, when the caller knows it (a run already tracked keeps
    what it has); without it, the provider's graph gives the fingerprint where the provider reports one."""
    existing = Run.objects.filter(provider=provider, external_id=external_id).first()
    if existing is not None:
        return existing, False
    run = _new_run(provider, _credential(provider), external_id, origin, created_by, workflow)
    try:
        with transaction.atomic():
            run.save(force_insert=True)
    except IntegrityError:
        # Tracked concurrently by someone else: theirs wins, and it is the same run.
        return Run.objects.get(provider=provider, external_id=external_id), False
    return run, True


def _credential(provider: Provider):
    return provider.credentials.filter(is_active=True).first()


def _new_run(provider: Provider, credential, external_id: str, origin: str, created_by, workflow=None) -> Run:
    return Run(
        organization_id=provider.organization_id,
        provider=provider,
        credential=credential,
        external_id=external_id,
        origin=origin,
        created_by=created_by,
        workflow=workflow or {},
        # bulk_create skips Run.save, which fills these in.
        search_text=search_text(external_id, workflow or {}, {}),
        caption=caption(workflow or {}, {}),
        workflow_fingerprint=workflow_fingerprint(workflow),
    )


def track_runs(
    provider: Provider,
    external_ids: Iterable[str],
    *,
    origin: str = Origin.TRACKED,
    created_by=None,
    workflow=None,
) -> list[TrackResult]:
    """Register up to MAX_TRACK_IDS ids at once; one result per id given, in order (repeats included).

    1. Ids that cannot be a run id get an error and are left out.
    2. The rest go in with one INSERT that skips rows already there (ON CONFLICT DO NOTHING on
       PostgreSQL, INSERT OR IGNORE on SQLite), so concurrent registrations of the same id are safe.
    3. One SELECT reads every id's run back. A run is "created" when its code is the one built here:
       a run someone else inserted first (before or during this call) keeps its own code.
    """
    given = [str(value).strip() for value in external_ids]
    if len(given) > MAX_TRACK_IDS:
        raise ValueError(f"at most {MAX_TRACK_IDS} ids at once, not {len(given)}")
    valid = list(dict.fromkeys(i for i in given if external_id_problem(i) is None))
    credential = _credential(provider)
    built = {
        external_id: _new_run(provider, credential, external_id, origin, created_by, workflow) for external_id in valid
    }
    if built:
        Run.objects.bulk_create(built.values(), ignore_conflicts=True)
    found = dict(Run.objects.filter(provider=provider, external_id__in=valid).values_list("external_id", "code"))
    results, seen = [], set()
    for external_id in given:
        problem = external_id_problem(external_id)
        if problem:
            results.append(TrackResult(external_id, error=f"The external id {problem}."))
        elif external_id not in found:
            # Only if the run was deleted between the INSERT and the SELECT.
            results.append(TrackResult(external_id, error="The run could not be registered; try again."))
        else:
            code = found[external_id]
            created = code == built[external_id].code and external_id not in seen
            results.append(TrackResult(external_id, code, created))
            seen.add(external_id)
    return results


def read_external_ids(text: str) -> list[str]:
    """Ids from a pasted list or a CSV file's text.

    A CSV whose first row names an id column (`external_id`, `id`, `prompt_id`, `run_id`) gives that
    column; anything else is split on whitespace, commas and semicolons, and lines starting with `#`
    are comments. Blank cells are skipped; the order is kept (repeats too: they get the same run).
    """
    lines = text.lstrip("\ufeff").splitlines()
    header = next((line for line in lines if line.strip()), "")
    first_row = next(csv.reader([header]), [])
    names = [cell.strip().lower() for cell in first_row]
    column = next((names.index(name) for name in _ID_HEADERS if name in names), None)
    if column is not None:
        rows = list(csv.reader(io.StringIO("\n".join(lines))))[1:]
        return [row[column].strip() for row in rows if len(row) > column and row[column].strip()]
    ids: list[str] = []
    for line in lines:
        if not line.lstrip().startswith("#"):
            ids += [part for part in _SEPARATORS.split(line) if part]
    return ids
