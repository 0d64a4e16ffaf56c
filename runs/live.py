"""The runs list kept live: what one poll of `/runs/rows/` answers.

The page asks, in one request, for (a) the rows it shows that can still change — only unfinished runs
can: a finished status is final — and (b) runs matching its filters that are newer than the newest
one it knows. On the first page new runs are added at the top; on later pages (or when too many
arrived at once) the page only says how many there are. Finished rows are never asked about again,
so a table of finished runs costs one small indexed query per poll.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.db.models import Q, QuerySet

from runs.models import HEAVY_FIELDS, Run
from runs.queries import MAX_LIMIT, BadCursor, decode_cursor, filter_runs, newest_first, parse_filters

# The query parameters that choose which runs a list shows (and so which new runs belong in it).
FILTER_PARAMS = ("status", "provider", "origin", "created_after", "created_before", "q")
# More new runs than this are announced rather than inserted (the page would grow without bound).
MAX_INSERTED = 50
# "N new runs" counts up to this; beyond, "more than N".
MAX_COUNTED = 500


@dataclass
class LiveUpdate:
    refreshed: list[Run] = field(default_factory=list)
    inserted: list[Run] = field(default_factory=list)
    new_count: int = 0
    more_than_counted: bool = False


def live_query(params, *, first_page: bool) -> str:
    """The poll URL's query: the list's filters, and whether the page is the first one."""
    pairs = [(name, value) for name in FILTER_PARAMS for value in params.getlist(name) if value]
    if not first_page:
        pairs.append(("later", "1"))
    return urlencode(pairs)


def newer_than(queryset: QuerySet[Run], cursor: str | None) -> QuerySet[Run]:
    """Runs after the (created, code) position `cursor` carries, newest first; all of them without one."""
    queryset = newest_first(queryset)
    if not cursor:
        return queryset
    created, code = decode_cursor(cursor)
    return queryset.filter(created__gte=created).filter(Q(created__gt=created) | Q(created=created, code__gt=code))


def poll(params, organization) -> LiveUpdate:
    """One poll: `params` carries the list's filters, `code` for each unfinished row shown, `since`
    (the cursor of the newest run the page knows) and `later` on pages after the first."""
    update = LiveUpdate()
    runs = Run.objects.filter(organization=organization).defer(*HEAVY_FIELDS).select_related("provider")
    codes = []
    for value in params.getlist("code")[:MAX_LIMIT]:  # a page shows at most MAX_LIMIT runs
        try:
            codes.append(uuid.UUID(value))
        except ValueError:
            continue
    if codes:
        by_code = {run.code: run for run in runs.filter(code__in=codes)}
        update.refreshed = [by_code[code] for code in dict.fromkeys(codes) if code in by_code]
    filters = parse_filters(params, organization)
    try:
        newer = newer_than(filter_runs(runs, filters), params.get("since"))
    except BadCursor:
        return update
    if params.get("later"):
        update.new_count = _count(newer)
    else:
        found = list(newer[: MAX_INSERTED + 1])
        if len(found) <= MAX_INSERTED:
            update.inserted = found
        else:
            update.new_count = _count(newer)
    if update.new_count > MAX_COUNTED:
        update.new_count, update.more_than_counted = MAX_COUNTED, True
    return update


def _count(newer: QuerySet[Run]) -> int:
    """How many runs `newer` holds, counting no further than one past MAX_COUNTED."""
    return len(newer.values_list("pk", flat=True)[: MAX_COUNTED + 1])
