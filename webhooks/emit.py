"""Turning run changes into webhook messages (called explicitly from `Run.apply`, not by signals).

`announce_run_change` runs inside `Run.apply`'s transaction and only registers an on-commit
callback; the callback writes one `WebhookDelivery` per matching endpoint and event. It costs one
query when the organization has no endpoints, and it never raises into the sync sweep.
"""

from __future__ import annotations

import logging
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from webhooks.models import STATUS_EVENTS, WebhookDelivery, WebhookEndpoint

if TYPE_CHECKING:
    from runs.models import Run, RunOutput

logger = logging.getLogger("webhooks")


def announce_run_change(run: Run, *, status_changed: bool, new_outputs: list[RunOutput]) -> None:
    event = STATUS_EVENTS.get(run.status) if status_changed else None
    if event is None and not new_outputs:
        return
    callback = partial(enqueue_run_events, run.organization_id, run.pk, event, [o.pk for o in new_outputs])
    transaction.on_commit(callback, robust=True)


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def enqueue_run_events(organization_id: int, run_pk: int, status_event: str | None, output_pks: list[int]) -> int:
    """Write the deliveries for one run change; returns how many. Never raises (logged instead)."""
    try:
        return _enqueue(organization_id, run_pk, status_event, output_pks)
    except Exception:
        logger.exception("could not enqueue webhooks for run %s", run_pk)
        return 0


def _enqueue(organization_id: int, run_pk: int, status_event: str | None, output_pks: list[int]) -> int:
    endpoints = list(WebhookEndpoint.objects.filter(organization_id=organization_id, is_active=True))
    events = ([status_event] if status_event else []) + (["run.output"] if output_pks else [])
    if not any(e.wants(event) for e in endpoints for event in events):
        return 0
    from runs.models import Run
    from runs.schemas import OutputOut, RunOut, run_json, runs_for_api

    run = runs_for_api(Run.objects.filter(pk=run_pk)).get()
    run_data = RunOut.model_validate(run_json(run)).model_dump(mode="json")
    now = timezone.now().isoformat()
    messages: list[tuple[str, dict[str, Any]]] = []
    if status_event:
        messages.append((status_event, {"type": status_event, "timestamp": now, "data": {"run": run_data}}))
    for output in (o for o in run.outputs.all() if o.pk in output_pks):
        output_data = next(o for o in run_data["outputs"] if o["id"] == str(output.code))
        data = {"run": run_data, "output": OutputOut.model_validate(output_data).model_dump(mode="json")}
        messages.append(("run.output", {"type": "run.output", "timestamp": now, "data": data}))
    deliveries = [
        WebhookDelivery(endpoint=endpoint, event_id=message_id(), event_type=event, payload=payload)
        for event, payload in messages
        for endpoint in endpoints
        if endpoint.wants(event)
    ]
    WebhookDelivery.objects.bulk_create(deliveries)
    return len(deliveries)
