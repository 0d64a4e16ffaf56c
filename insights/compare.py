"""One workflow across providers: how often it succeeds, how long it waits and runs, what it costs, why it
fails. Shared by the compare page and `GET /api/v1/workflows/{fingerprint}/compare`.

Durations use provider times only: a queue time needs the provider's queued and started times, a run time
its started and finished times. A time comfytrack only observed (when a poll first saw the run running,
say) says more about the poll interval than about the provider, so those runs count in the totals but not
in the percentiles (`timed_runs` says how many did).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

from django.db.models import Count, Max, QuerySet

from insights.models import Workflow
from runs.fingerprint import most_common_prefix
from runs.models import TERMINAL, Run, Status
from runs.queries import PROBLEM_STATUSES
from runs.stats import percentile

PROVIDER = "provider"
TOP_ERRORS = 5
NAME_SAMPLE = 20  # recent runs whose SaveImage prefixes name a workflow


@dataclass
class ProviderComparison:
    code: str
    name: str
    kind: str
    runs: int = 0
    finished: int = 0
    succeeded: int = 0
    timed_runs: int = 0
    queue_p50: float | None = None
    queue_p95: float | None = None
    run_p50: float | None = None
    run_p95: float | None = None
    top_errors: list[tuple[str, int]] = field(default_factory=list)

    @property
    def success_rate(self) -> float | None:
        return round(self.succeeded / self.finished, 4) if self.finished else None


@dataclass
class Comparison:
    workflow: Workflow
    since: datetime
    until: datetime
    providers: list[ProviderComparison] = field(default_factory=list)
    # provider code → [(day, median run seconds, timed runs that day)]
    run_time_per_day: dict[str, list[tuple[date, float, int]]] = field(default_factory=dict)

    @property
    def runs(self) -> int:
        return sum(p.runs for p in self.providers)


def workflow_runs(organization_id: int, fingerprint: str) -> QuerySet[Run]:
    return Run.objects.filter(organization=organization_id, workflow_fingerprint=fingerprint)


def compare(organization_id: int, fingerprint: str, since: datetime, until: datetime) -> Comparison | None:
    """The comparison of `fingerprint`'s runs created in [since, until], or None if it has no runs at all."""
    workflow = named_workflows(organization_id, [fingerprint]).get(fingerprint)
    if workflow is None:
        return None
    window = workflow_runs(organization_id, fingerprint).filter(created__gte=since, created__lte=until)
    result = Comparison(workflow, since, until)
    by_provider = _counts(window)
    per_day = _durations(window, by_provider)
    for provider_id, messages in _errors(window).items():
        by_provider[provider_id].top_errors = messages.most_common(TOP_ERRORS)
    result.providers = sorted(by_provider.values(), key=lambda p: (-p.runs, p.name))
    ids = {pk: p.code for pk, p in by_provider.items()}
    result.run_time_per_day = {
        ids[pk]: [(day, percentile(sorted(values), 0.5), len(values)) for day, values in sorted(days.items())]
        for pk, days in per_day.items()
    }
    return result


def _counts(window: QuerySet[Run]) -> dict[int, ProviderComparison]:
    by_provider: dict[int, ProviderComparison] = {}
    rows = window.values_list("provider_id", "provider__code", "provider__name", "provider__kind", "status")
    for provider_id, code, name, kind, status, n in rows.annotate(n=Count("id")).order_by():
        entry = by_provider.setdefault(provider_id, ProviderComparison(str(code), name, kind))
        entry.runs += n
        entry.finished += n if status in TERMINAL else 0
        entry.succeeded += n if status == Status.SUCCEEDED else 0
    return by_provider


def _durations(window: QuerySet[Run], by_provider: dict[int, ProviderComparison]) -> dict[int, dict[date, list]]:
    """Queue and run percentiles per provider from provider times; run seconds per provider and day."""
    queue: dict[int, list[float]] = defaultdict(list)
    run: dict[int, list[float]] = defaultdict(list)
    per_day: dict[int, dict[date, list[float]]] = defaultdict(lambda: defaultdict(list))
    timed = window.filter(started_source=PROVIDER).values_list(
        "provider_id", "queued", "queued_source", "started", "finished", "finished_source"
    )
    for provider_id, queued, queued_source, started, finished, finished_source in timed.iterator(chunk_size=2000):
        by_provider[provider_id].timed_runs += 1
        if queued is not None and queued_source == PROVIDER:
            queue[provider_id].append(max((started - queued).total_seconds(), 0.0))
        if finished is not None and finished_source == PROVIDER:
            seconds = max((finished - started).total_seconds(), 0.0)
            run[provider_id].append(seconds)
            per_day[provider_id][started.date()].append(seconds)
    for provider_id, entry in by_provider.items():
        queue_list, run_list = sorted(queue[provider_id]), sorted(run[provider_id])
        entry.queue_p50, entry.queue_p95 = percentile(queue_list, 0.5), percentile(queue_list, 0.95)
        entry.run_p50, entry.run_p95 = percentile(run_list, 0.5), percentile(run_list, 0.95)
    return per_day


def _errors(window: QuerySet[Run]) -> dict[int, Counter[str]]:
    found: dict[int, Counter[str]] = defaultdict(Counter)
    rows = window.filter(status__in=PROBLEM_STATUSES).values_list("provider_id", "error__message")
    for provider_id, message in rows.iterator(chunk_size=2000):
        text = str(message or "").strip().splitlines()[0][:160] if message else ""
        found[provider_id][text or "(no message)"] += 1
    return found


# -- workflows and their names ------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowSummary:
    workflow: Workflow
    runs: int
    providers: int
    last_run: datetime


def list_workflows(
    organization_id: int, since: datetime | None, limit: int = 200, *, fingerprint: str | None = None
) -> list[WorkflowSummary]:
    """The organization's workflows with runs since `since` (ever: None), most recently run first."""
    runs = Run.objects.filter(organization=organization_id).exclude(workflow_fingerprint="")
    if since is not None:
        runs = runs.filter(created__gte=since)
    if fingerprint is not None:
        runs = runs.filter(workflow_fingerprint=fingerprint)
    rows = (
        runs.values("workflow_fingerprint")
        .annotate(runs=Count("id"), providers=Count("provider", distinct=True), last_run=Max("created"))
        .order_by("-last_run")[:limit]
    )
    rows = list(rows)
    named = named_workflows(organization_id, [row["workflow_fingerprint"] for row in rows])
    return [
        WorkflowSummary(named[row["workflow_fingerprint"]], row["runs"], row["providers"], row["last_run"])
        for row in rows
        if row["workflow_fingerprint"] in named
    ]


def named_workflows(organization_id: int, fingerprints: list[str]) -> dict[str, Workflow]:
    """A `Workflow` (with its name) for each fingerprint that has runs; the first sight of one names it."""
    known = {
        w.fingerprint: w for w in Workflow.objects.filter(organization=organization_id, fingerprint__in=fingerprints)
    }
    for fingerprint in fingerprints:
        if fingerprint in known:
            continue
        recent = workflow_runs(organization_id, fingerprint).order_by("-created").values_list("workflow", flat=True)
        sample = list(recent[:NAME_SAMPLE])
        if not sample:
            continue
        known[fingerprint], _ = Workflow.objects.get_or_create(
            organization_id=organization_id, fingerprint=fingerprint, defaults={"name": most_common_prefix(sample)}
        )
    return known
