"""Workflows and their comparison across providers in the JSON API (insights.compare does the work)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from uuid import UUID

from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Query, Router, Schema
from pydantic import field_validator

from accounts.api_auth import caller
from comfytrack.api_errors import errors, not_found
from insights.compare import Comparison, ProviderComparison, compare, list_workflows, named_workflows
from insights.views import FINGERPRINT, label_problem
from runs.schemas import money
from runs.stats import MAX_WINDOW_DAYS

router = Router(tags=["workflows"])
NO_SUCH_WORKFLOW = "No such workflow in this organization."


class WorkflowOut(Schema):
    fingerprint: str = Field(description="Hash of the API-format graph without per-run values (seeds, prompts, files).")
    name: str = Field(description="The label a member set, else the most common SaveImage prefix of its runs.")
    label: str
    runs: int
    providers: int
    last_run: datetime


class WorkflowPage(Schema):
    items: list[WorkflowOut]


class ErrorCount(Schema):
    message: str
    count: int


class ProviderComparisonOut(Schema):
    id: UUID
    name: str
    kind: str
    runs: int
    finished: int
    succeeded: int
    success_rate: float | None = Field(description="succeeded / finished runs (0..1).")
    timed_runs: int = Field(description="Runs with a provider-reported start time (the percentiles' population).")
    queue_p50: float | None
    queue_p95: float | None
    run_p50: float | None
    run_p95: float | None
    costed_runs: int = Field(description="Runs with a cost (reported or estimated).")
    cost_total: str | None = Field(description="USD, the sum over costed runs (a decimal string), or null.")
    cost_per_run: str | None = Field(description="USD, cost_total / costed_runs, or null.")
    top_errors: list[ErrorCount]


class DayPoint(Schema):
    day: date
    run_p50: float
    runs: int


class ComparisonOut(Schema):
    fingerprint: str
    name: str
    label: str
    since: datetime
    until: datetime
    runs: int
    providers: list[ProviderComparisonOut]
    run_time_per_day: dict[str, list[DayPoint]] = Field(description="Provider id → median run seconds per day.")


class LabelIn(Schema):
    label: str = Field(max_length=100, description="A name for the workflow; empty to go back to the derived one.")

    @field_validator("label")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if label_problem(value):
            raise ValueError(label_problem(value))
        return value


def _days(days: int) -> tuple[datetime, datetime]:
    now = timezone.now()
    return now - timedelta(days=days), now


def _fingerprint(value: str) -> str:
    value = value.strip().lower()
    if not FINGERPRINT.match(value):
        raise not_found(NO_SUCH_WORKFLOW)
    return value


@router.get("", response={200: WorkflowPage, **errors()}, summary="Workflows")
def workflows(request: HttpRequest, days: int = Query(90, ge=1, le=MAX_WINDOW_DAYS)):
    """The organization's workflows (runs with a known graph, grouped by fingerprint) that ran in the last
    `days` days, most recently run first (at most 200)."""
    since, _ = _days(days)
    found = list_workflows(caller(request).organization_id, since)
    return {"items": [_workflow_json(s.workflow, s.runs, s.providers, s.last_run) for s in found]}


def _workflow_json(workflow, runs: int, providers: int, last_run: datetime) -> dict:
    return {
        "fingerprint": workflow.fingerprint,
        "name": workflow.display_name,
        "label": workflow.label,
        "runs": runs,
        "providers": providers,
        "last_run": last_run,
    }


@router.get("/{fingerprint}/compare", response={200: ComparisonOut, **errors(404)}, summary="Compare providers")
def compare_workflow(request: HttpRequest, fingerprint: str, days: int = Query(30, ge=1, le=MAX_WINDOW_DAYS)):
    """Per provider, for this workflow's runs created in the last `days` days: runs, success rate, p50/p95
    queue and run seconds (provider-reported times only), top errors, and median run seconds per day."""
    since, until = _days(days)
    result = compare(caller(request).organization_id, _fingerprint(fingerprint), since, until)
    if result is None:
        raise not_found(NO_SUCH_WORKFLOW)
    return comparison_json(result)


def provider_comparison_json(entry: ProviderComparison) -> dict:
    p = entry.stats
    return {
        "id": p.code,
        "name": p.name,
        "kind": p.kind,
        "runs": p.total,
        "finished": p.finished,
        "succeeded": p.succeeded,
        "success_rate": p.success_rate,
        "timed_runs": entry.timed_runs,
        "queue_p50": p.queue_p50,
        "queue_p95": p.queue_p95,
        "run_p50": p.run_p50,
        "run_p95": p.run_p95,
        "costed_runs": p.costed,
        "cost_total": money(p.cost_total),
        "cost_per_run": money(p.cost_per_run),
        "top_errors": [{"message": m, "count": n} for m, n in entry.top_errors],
    }


def comparison_json(result: Comparison) -> dict:
    return {
        "fingerprint": result.workflow.fingerprint,
        "name": result.workflow.display_name,
        "label": result.workflow.label,
        "since": result.since,
        "until": result.until,
        "runs": result.runs,
        "providers": [provider_comparison_json(p) for p in result.providers],
        "run_time_per_day": {
            p.stats.code: [{"day": d, "run_p50": s, "runs": n} for d, s, n in p.run_time_per_day]
            for p in result.providers
        },
    }


@router.put("/{fingerprint}/label", response={200: WorkflowOut, **errors(403, 404)}, summary="Name a workflow")
def label_workflow(request: HttpRequest, fingerprint: str, payload: LabelIn):
    """Set the workflow's name as shown on the compare page and in `GET /workflows`."""
    fingerprint = _fingerprint(fingerprint)
    workflow = named_workflows(caller(request).organization_id, [fingerprint]).get(fingerprint)
    if workflow is None:
        raise not_found(NO_SUCH_WORKFLOW)
    workflow.label = payload.label.replace("\x00", "").strip()
    workflow.save(update_fields=["label", "updated"])
    summary = list_workflows(caller(request).organization_id, None, fingerprint=fingerprint)[0]
    return _workflow_json(workflow, summary.runs, summary.providers, summary.last_run)
