"""Turning run changes into webhook messages: a subscriber of the run-change hook (runs.changes),
registered by WebhooksConfig.ready.

`enqueue_run_changes` runs inside the transaction of the status change and writes one
`WebhookDelivery` per matching endpoint and event there (a transactional outbox): a committed change
always has its messages, a rolled-back one has none. `webhooks.delivery` sends them later, outside
the sweep. It costs one query per batch when the organizations involved have no endpoints, and none once
a sweep has found that.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.utils import timezone

from comfytrack.api_json import datetime_text
from runs import per_sweep
from runs.changes import RunChange
from runs.models import RunOutput
from runs.schemas import json_ready, rows_json, run_row_queryset
from webhooks.models import STATUS_EVENTS, WebhookDelivery, WebhookEndpoint

# (organization id, run pk, status event or None, keys of new outputs)
Change = tuple[int, int, str | None, list[str]]


def enqueue_run_changes(run_changes: Sequence[RunChange]) -> int:
    """Write the deliveries for a batch of run changes, in the caller's transaction; returns how many.

    Errors propagate: the change they belong to must roll back with them rather than commit without
    its messages.
    """
    without_endpoints: set[int] = per_sweep.kept("webhooks.orgs_without_endpoints", set)
    if without_endpoints and all(change.run.organization_id in without_endpoints for change in run_changes):
        return 0
    changes: list[Change] = []
    for change in run_changes:
        run = change.run
        event = STATUS_EVENTS.get(run.status) if change.status_changed else None
        if event or change.new_output_keys:
            changes.append((run.organization_id, run.id, event, list(change.new_output_keys)))
    return _enqueue(changes) if changes else 0


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def _enqueue(changes: list[Change]) -> int:
    # Organizations found without active endpoints are not asked again within a sweep (runs.per_sweep): an
    # endpoint added meanwhile gets the events of changes from at most `runs.per_sweep.MAX_AGE` later on.
    # Endpoints themselves are read for every batch, so a disabled or deleted one is never sent to.
    without_endpoints: set[int] = per_sweep.kept("webhooks.orgs_without_endpoints", set)
    organizations = {c[0] for c in changes} - without_endpoints
    if not organizations:
        return 0
    endpoints_by_org: dict[int, list[WebhookEndpoint]] = {}
    for endpoint in WebhookEndpoint.objects.filter(organization_id__in=organizations, is_active=True):
        endpoints_by_org.setdefault(endpoint.organization_id, []).append(endpoint)
    without_endpoints.update(organizations - endpoints_by_org.keys())
    wanted = [c for c in changes if c[0] in endpoints_by_org]
    if not wanted:
        return 0
    payloads = _run_payloads(wanted)
    new_outputs = _new_output_codes(wanted)
    deliveries: list[WebhookDelivery] = []
    for organization_id, run_pk, status_event, _ in wanted:
        run_data = payloads.get(run_pk)
        if run_data is None:
            continue
        for event, payload in _messages(run_data, status_event, new_outputs.get(run_pk, set())):
            deliveries += [
                WebhookDelivery(endpoint=endpoint, event_id=message_id(), event_type=event, payload=payload)
                for endpoint in endpoints_by_org[organization_id]
                if endpoint.wants(event)
            ]
    WebhookDelivery.objects.bulk_create(deliveries)
    return len(deliveries)


def _run_payloads(changes: list[Change]) -> dict[int, dict[str, Any]]:
    """Each changed run's JSON exactly as the API shows it (runs.schemas), JSON-ready, by run pk."""
    rows = list(run_row_queryset().filter(pk__in={c[1] for c in changes}).order_by())
    return {row["pk"]: json_ready(data) for row, data in zip(rows, rows_json(rows), strict=True)}


def _new_output_codes(changes: list[Change]) -> dict[int, set[str]]:
    """The codes of the outputs each change announces (changes name them by their provider key)."""
    wanted = {(run_pk, key) for _, run_pk, _, keys in changes for key in keys}
    found: dict[int, set[str]] = {}
    if not wanted:
        return found
    outputs = RunOutput.objects.filter(run_id__in={w[0] for w in wanted}, key__in={w[1] for w in wanted})
    for run_pk, key, code in outputs.values_list("run_id", "key", "code"):
        if (run_pk, key) in wanted:
            found.setdefault(run_pk, set()).add(str(code))
    return found


def _messages(run_data: dict[str, Any], status_event: str | None, new_outputs: set[str]):
    now = datetime_text(timezone.now())  # the API's format, like every time in the payload
    if status_event:
        yield status_event, {"type": status_event, "timestamp": now, "data": {"run": run_data}}
    for output in run_data["outputs"]:
        if output["id"] in new_outputs:
            data = {"run": run_data, "output": output}
            yield "run.output", {"type": "run.output", "timestamp": now, "data": data}
