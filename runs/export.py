"""The runs list's rows as CSV or JSON Lines, streamed: rows are read through a server-side cursor in
chunks and written out chunk by chunk, so a million runs never sit in memory at once.

One flat record per run (the columns are `COLUMNS`, documented in docs/api.md). Text that came from a
provider or a user may start with a character a spreadsheet takes for a formula: such CSV cells get a
leading apostrophe (`neutralise`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
from django.db.models import QuerySet
from django.http import StreamingHttpResponse

from comfytrack.api_json import datetime_text
from providers.models import Provider
from runs.models import Run, elapsed, queue_seconds
from runs.schemas import money

FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
# Rows per database round trip (and per chunk written to the client).
CHUNK_ROWS = 2000
# The full-width forms too: spreadsheets with an East Asian input method evaluate ＝1+1 as they do =1+1.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# What is read of each run: no heavy columns (workflow, inputs), no joins (providers come from a dict).
_FIELDS = (
    "code", "provider_id", "external_id", "status", "provider_status", "created", "queued", "started", "finished",
    "error__message", "error__node_type", "origin", "n_outputs", "cost", "cost_source",
)  # fmt: skip
COLUMNS = (
    "id", "provider", "provider_kind", "external_id", "status", "provider_status", "created", "queued", "started",
    "finished", "queue_seconds", "run_seconds", "error", "error_node_type", "origin", "n_outputs", "cost",
    "cost_source",
)  # fmt: skip


def neutralise(value: str) -> str:
    """A CSV cell a spreadsheet will show as text, never evaluate (`=HYPERLINK(…)`, `@SUM(…)`, `-2+3`)."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def _time(value: datetime | None) -> str | None:
    return datetime_text(value) if value is not None else None


def records(runs: QuerySet[Run], organization_id: int) -> Iterator[dict[str, Any]]:
    """One flat dict per run of `runs` (already filtered and scoped), newest first."""
    providers = {p.pk: p for p in Provider.objects.filter(organization=organization_id).only("pk", "name", "kind")}
    rows = runs.order_by("-created", "-code").values_list(*_FIELDS).iterator(chunk_size=CHUNK_ROWS)
    for (
        code,
        provider_id,
        ext,
        status,
        pstatus,
        created,
        queued,
        started,
        finished,
        err,
        node,
        origin,
        n,
        cost,
        cs,
    ) in rows:
        provider = providers.get(provider_id)
        yield {
            "id": str(code),
            "provider": provider.name if provider else "",
            "provider_kind": provider.kind if provider else "",
            "external_id": ext,
            "status": status,
            "provider_status": pstatus,
            "created": _time(created),
            "queued": _time(queued),
            "started": _time(started),
            "finished": _time(finished),
            "queue_seconds": queue_seconds(created, queued, started),
            "run_seconds": elapsed(started, finished),
            "error": _str_or_none(err),
            "error_node_type": _str_or_none(node),
            "origin": origin,
            "n_outputs": n,
            "cost": money(cost),
            "cost_source": cs or None,
        }


def _str_or_none(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    return neutralise(value) if isinstance(value, str) else value


def csv_chunks(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    """The header, then CSV text a few thousand rows at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for n, row in enumerate(rows, 1):
        writer.writerow([_csv_cell(row[column]) for column in COLUMNS])
        if n % CHUNK_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def jsonl_chunks(rows: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    """One JSON object per line, a few thousand lines at a time."""
    lines: list[bytes] = []
    for row in rows:
        lines.append(orjson.dumps(row))
        if len(lines) == CHUNK_ROWS:
            yield b"\n".join(lines) + b"\n"
            lines = []
    if lines:
        yield b"\n".join(lines) + b"\n"


def chunks(rows: Iterator[dict[str, Any]], fmt: str) -> Iterator[str] | Iterator[bytes]:
    return csv_chunks(rows) if fmt == "csv" else jsonl_chunks(rows)


def filename(fmt: str, now: datetime) -> str:
    return f"comfytrack-runs-{now:%Y%m%d-%H%M%S}.{fmt}"


def streamed(runs: QuerySet[Run], organization_id: int, fmt: str, now: datetime):
    """A download of `runs` in `fmt` ("csv" or "jsonl"), written while it is read."""
    response = StreamingHttpResponse(chunks(records(runs, organization_id), fmt), content_type=FORMATS[fmt])
    response["Content-Disposition"] = f'attachment; filename="{filename(fmt, now)}"'
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
