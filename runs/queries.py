"""Run list filters and keyset (cursor) pagination, shared by the dashboard and the JSON API.

Bad filter values become readable `FilterError`s naming their parameter, reported rather than raised;
cursors are opaque and carry (created, code), so pages stay stable while new runs arrive and no
integer id leaves the server.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from providers.models import Provider
from runs.models import Origin, Run, Status

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Shortcut filter: every way a run can end badly.
PROBLEM_STATUSES = ("failed", "timed_out", "lost")


class FilterError(ValueError):
    """A filter value that was ignored: `field` is its query parameter (the form field the dashboard
    marks, the API error's `field`), so nobody has to find it in the message's words."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass
class RunFilters:
    statuses: list[str] = field(default_factory=list)
    providers: list[Provider] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)
    q: str = ""
    created_after: datetime | None = None
    created_before: datetime | None = None
    errors: list[FilterError] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return bool(
            self.statuses or self.providers or self.origins or self.q or self.created_after or self.created_before
        )


def _param_text(value: Any) -> str:
    # PostgreSQL refuses NUL in text (a query using one fails with a 500), so no filter value keeps
    # one: the dashboard and the API read their filters here and behave the same.
    return str(value).replace("\x00", "")


def _values(params: Mapping[str, Any], name: str) -> list[str]:
    """Repeated (?status=a&status=b) and comma-separated (?status=a,b) values alike."""
    raw = params.getlist(name) if hasattr(params, "getlist") else params.get(name) or []
    if isinstance(raw, str):
        raw = [raw]
    return [part.strip() for item in raw for part in _param_text(item).split(",") if part.strip()]


def parse_filters(params: Mapping[str, Any], organization) -> RunFilters:
    """Read filters from query parameters; unknown values are reported in `errors` and ignored."""
    filters = RunFilters()
    for value in _values(params, "status"):
        if value == "problems":
            filters.statuses += [s for s in PROBLEM_STATUSES if s not in filters.statuses]
        elif value in Status.values:
            filters.statuses.append(value)
        else:
            filters.errors.append(FilterError("status", f"Unknown status {value!r} (use {', '.join(Status.values)})."))
    for value in _values(params, "origin"):
        if value in Origin.values:
            filters.origins.append(value)
        else:
            filters.errors.append(FilterError("origin", f"Unknown origin {value!r}."))
    filters.providers = _providers(_values(params, "provider"), organization, filters.errors)
    filters.q = _param_text(params.get("q") or "").strip()[:200]
    filters.created_after = _moment(params.get("created_after"), "created_after", filters.errors, end=False)
    filters.created_before = _moment(params.get("created_before"), "created_before", filters.errors, end=True)
    return filters


def provider_by_code_or_name(scoped: QuerySet[Provider], value: str) -> Provider | None:
    """The provider in `scoped` whose code (a UUID) or name is `value`, in one query."""
    try:
        return scoped.filter(Q(code=uuid.UUID(value)) | Q(name=value)).first()
    except ValueError:
        return scoped.filter(name=value).first()


def _providers(values: list[str], organization, errors: list[FilterError]) -> list[Provider]:
    """Providers by code or name, only within the organization (another org's provider is "unknown")."""
    found: list[Provider] = []
    if not values:
        return found  # without a filter, not even the queryset is built (it costs on every API list)
    scoped = Provider.objects.filter(organization=organization)
    for value in values:
        match = provider_by_code_or_name(scoped, value)
        if match is None:
            errors.append(FilterError("provider", f"Unknown provider {value!r}."))
        elif match not in found:
            found.append(match)
    return found


def _moment(value: Any, name: str, errors: list[FilterError], *, end: bool) -> datetime | None:
    """An ISO datetime or a date (a date means its start, or its end for `created_before`)."""
    text = _param_text(value or "")
    if not text:
        return None
    text = text.strip()
    try:
        moment = parse_datetime(text)
        if moment is None:
            day = parse_date(text)
            if day is None:
                raise ValueError
            moment = datetime.combine(day, time.max if end else time.min)
        moment = in_utc(moment)
    except ValueError:
        errors.append(FilterError(name, f"{name} must be a date (2026-11-30) or an ISO datetime, not {text[:40]!r}."))
        return None
    except OverflowError:
        errors.append(FilterError(name, f"{name} {text[:40]!r} is outside the years 1 to 9999 in UTC."))
        return None
    return moment


def in_utc(moment: datetime) -> datetime:
    """`moment` in UTC (naive means UTC). Raises OverflowError when its UTC falls outside years 1–9999,
    e.g. 0001-01-01T00:00+23:59: the databases' drivers convert to UTC and would fail with a 500."""
    if timezone.is_naive(moment):
        return timezone.make_aware(moment, UTC)
    return moment.astimezone(UTC)


def filter_runs(queryset: QuerySet, filters: RunFilters, *, through: str = "") -> QuerySet:
    """`queryset` narrowed to the runs `filters` choose; `through` is the lookup path to the run when the
    queryset is of another model (the gallery's outputs: "run__")."""
    if filters.statuses:
        queryset = queryset.filter(**{f"{through}status__in": filters.statuses})
    if filters.providers:
        queryset = queryset.filter(**{f"{through}provider__in": filters.providers})
    if filters.origins:
        queryset = queryset.filter(**{f"{through}origin__in": filters.origins})
    if filters.created_after:
        queryset = queryset.filter(**{f"{through}created__gte": filters.created_after})
    if filters.created_before:
        queryset = queryset.filter(**{f"{through}created__lte": filters.created_before})
    if filters.q:
        for word in filters.q.lower().split()[:8]:
            queryset = queryset.filter(**{f"{through}search_text__contains": word})
    return queryset


# -- cursor pagination -----------------------------------------------------------------------------


class BadCursor(ValueError):
    pass


def encode_cursor(row: Run | dict[str, Any]) -> str:
    """`row` is a model instance or a `.values()` row (the JSON API pages rows, not instances)."""
    created, code = (row["created"], row["code"]) if isinstance(row, dict) else (row.created, row.code)
    raw = f"{created.isoformat()}|{code}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_text, code_text = base64.urlsafe_b64decode(padded.encode()).decode().split("|")
        created = datetime.fromisoformat(created_text)
        if created.tzinfo is None:
            raise ValueError
        return in_utc(created), uuid.UUID(code_text)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise BadCursor("The cursor is not valid: start again from the first page.") from None


def parse_limit(value: Any, default: int = DEFAULT_LIMIT) -> int:
    """A page size in 1..MAX_LIMIT (raises ValueError with a message)."""
    if value in (None, ""):
        return default
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}.") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}.")
    return limit


def newest_first(queryset: QuerySet, created: datetime | None = None, code: uuid.UUID | None = None) -> QuerySet:
    """`queryset` newest first, after the (created, code) position a cursor carries, if any."""
    queryset = queryset.order_by("-created", "-code")
    if created is None:
        return queryset
    # The plain `created <= …` bound lets the (organization, created, code) index do a range scan; the OR
    # alone would not.
    return queryset.filter(created__lte=created).filter(Q(created__lt=created) | Q(created=created, code__lt=code))


def cut_page(rows: list, limit: int) -> tuple[list, str | None]:
    """`rows` holds up to limit + 1 rows: the page, and the next cursor if there is one more."""
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1])
    return rows, None


def paginate(queryset: QuerySet, cursor: str | None, limit: int) -> tuple[list, str | None]:
    """One page, newest first, after `cursor`; returns (rows, next_cursor or None on the last page).

    Works for any model with `created` and `code` (runs, outputs), and for `.values()` including both."""
    position = decode_cursor(cursor) if cursor else ()
    return cut_page(list(newest_first(queryset, *position)[: limit + 1]), limit)


def paginate_or_restart(
    queryset: QuerySet, cursor: str | None, limit: int, errors: list[str]
) -> tuple[list, str | None]:
    """For pages: a bad cursor is reported in `errors` and the first page is shown instead."""
    try:
        return paginate(queryset, cursor, limit)
    except BadCursor as exc:
        errors.append(str(exc))
        return paginate(queryset, None, limit)
