"""Organization statistics over a window: counts, success rate, queue/run time percentiles, failure reasons.

Shared by the dashboard's stats page and `GET /api/v1/stats`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, QuerySet, Sum
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


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not values:
        return None
    index = min(len(values) - 1, max(0, round(fraction * len(values) + 0.5) - 1))
    return round(values[index], 3)


def compute_stats(runs: QuerySet[Run], since: datetime, until: datetime | None = None) -> Stats:
    """Statistics for `runs` (already scoped to an organization) created in [since, until]."""
    until = until or timezone.now()
    window = runs.filter(created__gte=since, created__lte=until)
    stats = Stats(since=since, until=until)
    # One grouped scan of the window gives the runs per day, the status totals, each provider's counts
    # and costs, and the cost per day: over a million runs each scan takes about a second.
    groups = _groups(window)
    stats.per_day = _per_day(groups)
    by_status: Counter[str] = Counter()
    for _, counts in stats.per_day:
        by_status.update(counts)
    stats.by_status = dict(by_status)
    stats.total = sum(stats.by_status.values())
    stats.providers = per_provider(window, groups)
    stats.top_failures = _top_failures(window)
    names = {p.id: p.name for p in stats.providers}
    stats.cost_per_day = _cost_per_day(groups, names)
    return stats


@dataclass(frozen=True)
class _Group:
    """The window's runs of one day (of creation), provider and status."""

    day: date
    provider_id: int
    status: str
    runs: int
    costed: int
    cost: Decimal | None


def _groups(window: QuerySet[Run]) -> list[_Group]:
    rows = window.annotate(day=TruncDate("created")).values_list("day", "provider_id", "status")
    return [_Group(*row) for row in rows.annotate(n=Count("id"), costed=Count("cost"), cost=Sum("cost")).order_by()]


def _per_day(groups: list[_Group]) -> list[tuple[date, dict[str, int]]]:
    days: dict[date, Counter[str]] = defaultdict(Counter)
    for g in groups:
        days[g.day][g.status] += g.runs
    return [(day, dict(counts)) for day, counts in sorted(days.items())]


def _cost_per_day(groups: list[_Group], names: dict[int, str]) -> list[tuple[date, dict[str, Decimal]]]:
    days: dict[date, dict[str, Decimal]] = defaultdict(dict)
    for g in groups:
        if g.costed and g.cost is not None:
            name = names[g.provider_id]
            days[g.day][name] = days[g.day].get(name, Decimal(0)) + g.cost
    return sorted(days.items())


def per_provider(window: QuerySet[Run], groups: list[_Group] | None = None) -> list[ProviderStats]:
    """Each provider's counts, costs and provider-timed percentiles over `window` (`groups`: the window's
    grouped counts, when the caller has them already)."""
    groups = _groups(window) if groups is None else groups
    found = Provider.objects.filter(pk__in={g.provider_id for g in groups}).values_list("pk", "code", "name", "kind")
    by_provider = {pk: ProviderStats(str(code), name, kind, id=pk) for pk, code, name, kind in found}
    for g in groups:
        entry = by_provider[g.provider_id]
        entry.total += g.runs
        entry.finished += g.runs if g.status in TERMINAL else 0
        entry.succeeded += g.runs if g.status == Status.SUCCEEDED else 0
        if g.costed and g.cost is not None:
            entry.costed += g.costed
            entry.cost_total = (entry.cost_total or Decimal(0)) + g.cost
    durations: dict[int, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for provider_id, queue, run, _ in provider_timed(window):
        queue_list, run_list = durations[provider_id]
        if queue is not None:
            queue_list.append(queue)
        if run is not None:
            run_list.append(run)
    for provider_id, (queue_list, run_list) in durations.items():
        entry = by_provider[provider_id]
        queue_list.sort()
        run_list.sort()
        entry.queue_p50, entry.queue_p95 = percentile(queue_list, 0.5), percentile(queue_list, 0.95)
        entry.run_p50, entry.run_p95 = percentile(run_list, 0.5), percentile(run_list, 0.95)
    return sorted(by_provider.values(), key=lambda p: p.name)


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
    return reasons.most_common(limit)


def window_from_days(days: int) -> datetime:
    return timezone.now() - timedelta(days=min(max(days, 1), MAX_WINDOW_DAYS))
