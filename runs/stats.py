"""Organization statistics over a window: counts, success rate, queue/run time percentiles, failure reasons.

Shared by the dashboard's stats page and `GET /api/v1/stats`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connections, transaction
from django.db.models import (
    Aggregate,
    BigIntegerField,
    Case,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Func,
    Q,
    QuerySet,
    Sum,
    When,
)
from django.db.models.functions import TruncDate
from django.utils import timezone

from providers.models import Provider
from runs.models import TERMINAL, Run, Status
from runs.queries import PROBLEM_STATUSES
from runs.times import PROVIDER

MAX_WINDOW_DAYS = 366


@dataclass
class ProviderStats:
    code: str
    name: str
    kind: str
    id: int = 0  # the provider's primary key
    total: int = 0
    succeeded: int = 0
    finished: int = 0
    queue_p50: float | None = None
    queue_p95: float | None = None
    run_p50: float | None = None
    run_p95: float | None = None
    # Runs with a cost (insights.costing) and their sum; None when none has one.
    costed: int = 0
    cost_total: Decimal | None = None

    @property
    def success_rate(self) -> float | None:
        return round(self.succeeded / self.finished, 4) if self.finished else None

    @property
    def cost_per_run(self) -> Decimal | None:
        return (self.cost_total / self.costed).quantize(Decimal("0.000001")) if self.cost_total is not None else None


@dataclass
class Stats:
    since: datetime
    until: datetime
    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    providers: list[ProviderStats] = field(default_factory=list)
    per_day: list[tuple[date, dict[str, int]]] = field(default_factory=list)
    top_failures: list[tuple[str, int]] = field(default_factory=list)
    # Cost per day of creation and provider name (only days with costed runs).
    cost_per_day: list[tuple[date, dict[str, Decimal]]] = field(default_factory=list)

    @property
    def cost_total(self) -> Decimal | None:
        costs = [p.cost_total for p in self.providers if p.cost_total is not None]
        return sum(costs, Decimal(0)) if costs else None

    @property
    def finished(self) -> int:
        return sum(self.by_status.get(s, 0) for s in TERMINAL)

    @property
    def success_rate(self) -> float | None:
        return round(self.by_status.get(Status.SUCCEEDED, 0) / self.finished, 4) if self.finished else None


def rank(count: int, fraction: float) -> int:
    """The 0-based index of the nearest-rank percentile among `count` sorted values."""
    return min(count - 1, max(0, round(fraction * count + 0.5) - 1))


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not values:
        return None
    return round(values[rank(len(values), fraction)], 3)


# Which durations count (provider_timed): both ends the provider's. The queue starts at the provider's
# queued time, else at its created time.
QUEUE_TIMED = Q(started_source=PROVIDER, started__isnull=False) & (
    Q(queued__isnull=False, queued_source=PROVIDER) | Q(queued__isnull=True, created_source=PROVIDER)
)
RUN_TIMED = Q(started_source=PROVIDER, started__isnull=False, finished__isnull=False, finished_source=PROVIDER)


def compute_stats(runs: QuerySet[Run], since: datetime, until: datetime | None = None) -> Stats:
    """Statistics for `runs` (already scoped to an organization) created in [since, until]."""
    until = until or timezone.now()
    window = runs.filter(created__gte=since, created__lte=until)
    with _large_sorts(window.db):
        return _compute(window, since, until)


def _compute(window: QuerySet[Run], since: datetime, until: datetime) -> Stats:
    stats = Stats(since=since, until=until)
    groups = _groups(window)
    days: dict[date, dict[str, int]] = defaultdict(dict)
    costs: dict[date, dict[str, Decimal]] = defaultdict(dict)
    names = {provider_id: entry.name for provider_id, entry in groups.providers.items()}
    for group in groups.rows:
        days[group.day][group.status] = days[group.day].get(group.status, 0) + group.n
        if group.cost is not None:
            name = names[group.provider_id]
            costs[group.day][name] = costs[group.day].get(name, Decimal(0)) + group.cost
    stats.per_day = sorted(days.items())
    stats.cost_per_day = sorted(costs.items())
    by_status: Counter[str] = Counter()
    for _, counts in stats.per_day:
        by_status.update(counts)
    stats.by_status = dict(by_status)
    stats.total = sum(stats.by_status.values())
    stats.providers = _with_percentiles(window, groups)
    stats.top_failures = _top_failures(window)
    return stats


@dataclass
class _Group:
    day: date
    provider_id: int
    status: str
    n: int
    costed: int
    cost: Decimal | None
    queue_timed: int  # runs whose queue time counts (QUEUE_TIMED)
    run_timed: int


@dataclass
class _Groups:
    rows: list[_Group]
    providers: dict[int, ProviderStats]
    timed: dict[int, tuple[int, int]]  # provider id: (queue times, run times) that count


def _groups(window: QuerySet[Run]) -> _Groups:
    """Every count and cost sum of the window in one scan: grouped by day of creation, provider and status
    (at most days x providers x statuses rows), so the per-day, per-status, per-provider and cost figures
    are all added up from it rather than each scanning the window again."""
    grouped = window.annotate(day=TruncDate("created")).values_list("day", "provider_id", "status")
    # Rows counted by COUNT(*) and a column the covering index holds (created, never NULL), not by id: with
    # every column it reads in runs_run_org_stats (migration 0018), PostgreSQL scans that index alone.
    counted = grouped.annotate(
        n=Count("*"),
        costed=Count("cost"),
        cost=Sum("cost"),
        queue_timed=Count("created", filter=QUEUE_TIMED),
        run_timed=Count("created", filter=RUN_TIMED),
    ).order_by()
    rows = [_Group(*row) for row in counted]
    providers: dict[int, ProviderStats] = {}
    ids = {group.provider_id for group in rows}
    for provider_id, code, name, kind in Provider.objects.filter(pk__in=ids).values_list("id", "code", "name", "kind"):
        providers[provider_id] = ProviderStats(str(code), name, kind, id=provider_id)
    timed: dict[int, tuple[int, int]] = {}
    for group in rows:
        entry = providers[group.provider_id]
        entry.total += group.n
        entry.finished += group.n if group.status in TERMINAL else 0
        entry.succeeded += group.n if group.status == Status.SUCCEEDED else 0
        if group.cost is not None:
            entry.costed += group.costed
            entry.cost_total = (entry.cost_total or Decimal(0)) + group.cost
        queue, run = timed.get(group.provider_id, (0, 0))
        timed[group.provider_id] = (queue + group.queue_timed, run + group.run_timed)
    return _Groups(rows, providers, timed)


def per_provider(window: QuerySet[Run]) -> list[ProviderStats]:
    with _large_sorts(window.db):
        return _with_percentiles(window, _groups(window))


@contextmanager
def _large_sorts(using: str) -> Iterator[None]:
    """On PostgreSQL, these queries in one transaction that lets them sort in memory: a million-run
    window's grouping and percentile sorts need ~50 MB each, and spill to disk at the default 4 MB
    (measured: 2.4 s instead of 1.7 s for the percentiles). JIT off: the planner's estimates (a group
    per row) make it compile these plans, ~0.25 s for a query that runs a few hundred milliseconds."""
    if connections[using].vendor != "postgresql":
        yield
        return
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute("SET LOCAL jit = off")
        yield


def _with_percentiles(window: QuerySet[Run], groups: _Groups) -> list[ProviderStats]:
    if connections[window.db].vendor == "postgresql":
        found = percentiles_in_database(window, groups.timed)
    else:
        found = percentiles_in_python(window)
    for provider_id, (queue_p50, queue_p95, run_p50, run_p95) in found.items():
        entry = groups.providers[provider_id]
        entry.queue_p50, entry.queue_p95, entry.run_p50, entry.run_p95 = queue_p50, queue_p95, run_p50, run_p95
    return sorted(groups.providers.values(), key=lambda p: p.name)


Percentiles = tuple[float | None, float | None, float | None, float | None]  # queue p50, p95; run p50, p95


def percentiles_in_python(window: QuerySet[Run]) -> dict[int, Percentiles]:
    """Every timed run's durations read and sorted here (any database; PostgreSQL uses the SQL path)."""
    durations: dict[int, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for provider_id, queue, run, _ in provider_timed(window):
        queue_list, run_list = durations[provider_id]
        if queue is not None:
            queue_list.append(queue)
        if run is not None:
            run_list.append(run)
    found = {}
    for provider_id, (queue_list, run_list) in durations.items():
        if not queue_list and not run_list:
            continue  # as percentiles_in_database: only providers with a duration that counts
        queue_list.sort()
        run_list.sort()
        found[provider_id] = (
            percentile(queue_list, 0.5),
            percentile(queue_list, 0.95),
            percentile(run_list, 0.5),
            percentile(run_list, 0.95),
        )
    return found


def _since(end: str, start: str) -> ExpressionWrapper:
    return ExpressionWrapper(F(end) - F(start), output_field=DurationField())


# The durations provider_timed computes, as intervals: PostgreSQL orders them by their exact length and
# returns the chosen one as a timedelta, on which the same Python arithmetic as provider_timed's runs.
QUEUE_DURATION = Case(
    When(Q(queued__isnull=False, queued_source=PROVIDER), then=_since("started", "queued")),
    When(Q(queued__isnull=True, created_source=PROVIDER), then=_since("started", "created")),
    default=None,
    output_field=DurationField(),
)
RUN_DURATION = Case(
    When(Q(finished__isnull=False, finished_source=PROVIDER), then=_since("finished", "started")),
    default=None,
    output_field=DurationField(),
)


class _PercentilesDisc(Aggregate):
    """PostgreSQL's `percentile_disc(ARRAY[f, ...]) WITHIN GROUP (ORDER BY expression)`: several
    percentiles of a group from one sort; NULLs are left out."""

    function = "percentile_disc"
    template = "%(function)s(ARRAY[%(fractions)s]::float8[]) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression: Any, fractions: list[float], output_field: Any) -> None:
        from django.contrib.postgres.fields import ArrayField  # psycopg: PostgreSQL only

        # Our own floats, written as literals: repr() is the shortest text that reads back as the same double.
        fractions_sql = ", ".join(map(repr, fractions))
        super().__init__(expression, fractions=fractions_sql, output_field=ArrayField(output_field))


class _Microseconds(Func):
    """An interval as whole microseconds (bigint), the sort key of the percentiles: a million bigints sort
    in about half the time of a million intervals (by value, not by reference; measured in
    docs/benchmarks.md, "Stats page"). From the interval's double number of seconds, rounded to the nearest
    integer: each step rounds correctly, so a longer interval never gets a smaller key, and below
    EXACT_MICROSECONDS the double is within 0.1 µs of the exact value, so the key is exactly it."""

    template = "(date_part('epoch', %(expressions)s) * 1000000)::bigint"
    output_field = BigIntegerField()


# 2^28 s (8.5 years): below it the doubles of seconds and of microseconds step by at most 1/16 µs, so
# their roundings stay far from half a microsecond. A longer duration (a provider's garbage times) is
# sorted as an interval instead.
EXACT_MICROSECONDS = 2**28 * 1_000_000


def _disc_fractions(count: int) -> list[float]:
    """Fractions for which percentile_disc picks exactly the values `percentile` picks among `count`.
    percentile_disc(f) returns the value at 1-based row ceil(f * count); f = (k + 0.5) / count puts that
    product half a row past k, far from any rounding, so it returns row k + 1, the 0-based index k."""
    return [(rank(count, fraction) + 0.5) / max(count, 1) for fraction in (0.5, 0.95)]


def percentiles_in_database(window: QuerySet[Run], timed: dict[int, tuple[int, int]]) -> dict[int, Percentiles]:
    """The percentiles computed by PostgreSQL: one query per provider with timed runs, each sorting that
    provider's durations in the database instead of sending every row here. The counts (from _groups)
    give the exact fractions; values as `percentiles_in_python` gives them.

    The durations are sorted as whole microseconds (_Microseconds); the key a percentile lands on is
    the exact duration unless it is 8.5 years or more, and only then is that provider's query repeated
    sorting the intervals themselves."""
    found: dict[int, Percentiles] = {}
    for provider_id, (queue_count, run_count) in sorted(timed.items()):
        if not queue_count and not run_count:
            continue
        rows = window.filter(provider_id=provider_id, started_source=PROVIDER)
        queue, run = _percentile_pairs(rows, queue_count, run_count, exact_keys=True)
        if queue is None or run is None:
            queue, run = _percentile_pairs(rows, queue_count, run_count, exact_keys=False)
        found[provider_id] = (*(queue or (None, None)), *(run or (None, None)))
    return found


Pair = tuple[float | None, float | None]


def _percentile_pairs(
    rows: QuerySet[Run], queue_count: int, run_count: int, *, exact_keys: bool
) -> tuple[Pair | None, Pair | None]:
    """(queue p50, p95), (run p50, p95); with `exact_keys`, None for a pair whose key is not exact."""
    if exact_keys:
        queue_key: Any = _Microseconds(QUEUE_DURATION)
        run_key: Any = _Microseconds(RUN_DURATION)
        field: Any = BigIntegerField()
    else:
        queue_key, run_key, field = QUEUE_DURATION, RUN_DURATION, DurationField()
    result = rows.aggregate(
        queue=_PercentilesDisc(queue_key, _disc_fractions(queue_count), field),
        run=_PercentilesDisc(run_key, _disc_fractions(run_count), field),
    )
    queue = _rounded(result["queue"]) if queue_count else (None, None)
    run = _rounded(result["run"]) if run_count else (None, None)
    return queue, run


def _rounded(values: list[Any] | None) -> Pair | None:
    """Seconds to the millisecond of percentile_disc's values: intervals, or microseconds (None when
    one is too long to be exact)."""
    if not values:
        return None, None
    if any(isinstance(value, int) and abs(value) >= EXACT_MICROSECONDS for value in values):
        return None
    lengths = [value if isinstance(value, timedelta) else timedelta(microseconds=value) for value in values]
    p50, p95 = (round(max(length.total_seconds(), 0.0), 3) for length in lengths)
    return p50, p95


def provider_timed(window: QuerySet[Run]) -> Iterator[tuple[int, float | None, float | None, datetime]]:
    """(provider id, queue seconds, run seconds, started) of each run whose start the provider reported.

    Only the provider's own times: a poll's observation is off by up to a poll interval, which would
    swamp the percentiles of short runs (docs/api.md "Times"). A duration is None unless both its ends
    are the provider's (the queue starts at the provider's queued time, else at its created time)."""
    timed = window.filter(started_source=PROVIDER).values_list(
        "provider_id", "created", "created_source", "queued", "queued_source", "started", "finished", "finished_source"
    )
    rows: Iterator[tuple[Any, ...]] = timed.iterator(chunk_size=2000)
    for provider_id, created, created_source, queued, queued_source, started, finished, finished_source in rows:
        waited_from = (queued, queued_source) if queued else (created, created_source)
        queue = max((started - waited_from[0]).total_seconds(), 0.0) if waited_from[1] == PROVIDER else None
        run = max((finished - started).total_seconds(), 0.0) if finished and finished_source == PROVIDER else None
        yield provider_id, queue, run, started


def _top_failures(window: QuerySet[Run], limit: int = 5) -> list[tuple[str, int]]:
    """The commonest first lines of the problem runs' error messages. The database counts each distinct
    message (failures repeat a handful of messages), so the error documents themselves are not read."""
    reasons: Counter[str] = Counter()
    failed = window.filter(status__in=PROBLEM_STATUSES).values_list("error__message").annotate(n=Count("id"))
    for message, n in failed.order_by().iterator(chunk_size=2000):
        text = message if isinstance(message, str) else ""
        reasons[(text or "(no message)").splitlines()[0][:160] if text.strip() else "(no message)"] += n
    # Ties in a fixed order (by reason), whatever order the database grouped them in.
    return sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:limit]


def window_from_days(days: int) -> datetime:
    return timezone.now() - timedelta(days=min(max(days, 1), MAX_WINDOW_DAYS))
