"""One workflow across providers: how often it succeeds, how long it waits and runs, what it costs, why it
fails. Shared by the compare page and `GET /api/v1/workflows/{fingerprint}/compare`.

The counts, percentiles and costs per provider are the stats page's (runs.stats.per_provider) over the
workflow's runs, so both use provider times only; this adds each provider's top errors, how many runs the
provider timed, and the median run time per day for the chart.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

from django.db.models import Count, Max, QuerySet

from insights.models import Workflow
from runs.fingerprint import most_common_prefix
from runs.models import Run
from runs.queries import PROBLEM_STATUSES
from runs.stats import ProviderStats, per_provider, percentile, provider_timed

TOP_ERRORS = 5
NAME_SAMPLE = 20  # recent runs whose SaveImage prefixes name a workflow


@dataclass
class ProviderComparison:
    stats: ProviderStats
    timed_runs: int = 0  # runs whose start the provider reported: the percentiles' population
    top_errors: list[tuple[str, int]] = field(default_factory=list)
    run_time_per_day: list[tuple[date, float, int]] = field(default_factory=list)  # (day, median s, runs)


@dataclass
class Comparison:
    workflow: Workflow
    since: datetime
    until: datetime
    providers: list[ProviderComparison] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return sum(p.stats.total for p in self.providers)


def workflow_runs(organization_id: int, fingerprint: str) -> QuerySet[Run]:
    return Run.objects.filter(organization=organization_id, workflow_fingerprint=fingerprint)


def compare(organization_id: int, fingerprint: str, since: datetime, until: datetime) -> Comparison | None:
    """The comparison of `fingerprint`'s runs created in [since, until], or None if it has no runs at all."""
    workflow = named_workflows(organization_id, [fingerprint]).get(fingerprint)
    if workflow is None:
        return None
    window = workflow_runs(organization_id, fingerprint).filter(created__gte=since, created__lte=until)
    by_code = {p.code: ProviderComparison(p) for p in per_provider(window)}
    codes = dict(window.values_list("provider_id", "provider__code").distinct().order_by())
    timed: dict[int, int] = Counter()
    per_day: dict[int, dict[date, list[float]]] = defaultdict(lambda: defaultdict(list))
    for provider_id, _, run, started in provider_timed(window):
        timed[provider_id] += 1
        if run is not None:
            per_day[provider_id][started.date()].append(run)
    errors = _errors(window)
    for provider_id, code in codes.items():
        entry = by_code[str(code)]
        entry.timed_runs = timed[provider_id]
        entry.top_errors = errors[provider_id].most_common(TOP_ERRORS)
        entry.run_time_per_day = _medians(per_day[provider_id])
    providers = sorted(by_code.values(), key=lambda p: (-p.stats.total, p.stats.name))
    return Comparison(workflow, since, until, providers)


def _medians(days: dict[date, list[float]]) -> list[tuple[date, float, int]]:
    """(day, median run seconds, runs) for each day, in order."""
    found = []
    for day, values in sorted(days.items()):
        median = percentile(sorted(values), 0.5)
        if median is not None:
            found.append((day, median, len(values)))
    return found


def _errors(window: QuerySet[Run]) -> dict[int, Counter[str]]:
    found: dict[int, Counter[str]] = defaultdict(Counter)
    rows = window.filter(status__in=PROBLEM_STATUSES).values_list("provider_id", "error__message")
    for provider_id, message in rows.iterator(chunk_size=2000):
        text = str(message).strip().splitlines()[0][:160] if message else ""
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
    rows = list(
        runs.values("workflow_fingerprint")
        .annotate(runs=Count("id"), providers=Count("provider", distinct=True), last_run=Max("created"))
        .order_by("-last_run")[:limit]
    )
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
