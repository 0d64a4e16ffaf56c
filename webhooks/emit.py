"""Turning run changes into webhook messages (called explicitly from runs.applying.apply_many, the one
path every status change and new output takes; no model signals).

`announce_run_changes` runs inside the apply transaction and only registers one on-commit callback
per batch; the callback writes one `WebhookDelivery` per matching endpoint and event. It costs one
query per batch when the organizations involved have no endpoints, and it never raises into the
sync sweep.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from webhooks.models import STATUS_EVENTS, WebhookDelivery, WebhookEndpoint

if TYPE_CHECKING:
    from runs.models import Run

logger = logging.getLogger("webhooks")

# (organization id, run pk, status event or None, keys of new outputs)
Change = tuple[int, int, str | None, list[str]]


def announce_run_changes(items: Sequence[tuple[Run, bool, list[str]]]) -> None:
    """items: (run after the change, whether its status changed, keys of its new outputs)."""
    changes: list[Change] = []
    for run, status_changed, output_keys in items:
        event = STATUS_EVENTS.get(run.status) if status_changed else None
        if event or output_keys:
            changes.append((run.organization_id, run.pk, event, list(output_keys)))
    if changes:
        transaction.on_commit(partial(enqueue_run_events, changes), robust=True)


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def enqueue_run_events(changes: list[Change]) -> int:
    """Write the deliveries for committed run changes; returns how many. Never raises (logged instead)."""
    try:
        return _enqueue(changes)
    except Exception:
        logger.exception("could not enqueue webhooks for %d run change(s)", len(changes))
        return 0


def _enqueue(changes: list[Change]) -> int:
    endpoints_by_org: dict[int, list[WebhookEndpoint]] = {}
    for endpoint in WebhookEndpoint.objects.filter(organization_id__in={c[0] for c in changes}, is_active=True):
        endpoints_by_org.setdefault(endpoint.organization_id, []).append(endpoint)
    wanted = [c for c in changes if c[0] in endpoints_by_org]
    if not wanted:
        return 0
    from runs.models import Run
    from runs.schemas import RunOut, run_json, runs_for_api

    runs = runs_for_api(Run.objects.filter(pk__in={c[1] for c in wanted})).in_bulk()
    deliveries: list[WebhookDelivery] = []
    for organization_id, run_pk, status_event, output_keys in wanted:
        run = runs.get(run_pk)
        if run is None:
            continue
        run_data = RunOut.model_validate(run_json(run)).model_dump(mode="json")
        for event, payload in _messages(run, run_data, status_event, output_keys):
            deliveries += [
                WebhookDelivery(endpoint=endpoint, event_id=message_id(), event_type=event, payload=payload)
                for endpoint in endpoints_by_org[organization_id]
                if endpoint.wants(event)
            ]
    WebhookDelivery.objects.bulk_create(deliveries)
    return len(deliveries)


def _messages(run: Run, run_data: dict[str, Any], status_event: str | None, output_keys: list[str]):
    now = timezone.now().isoformat()
    if status_event:
        yield status_event, {"type": status_event, "timestamp": now, "data": {"run": run_data}}
    codes = {str(o.code) for o in run.outputs.all() if o.key in output_keys}
    for output in run_data["outputs"]:
        if output["id"] in codes:
            data = {"run": run_data, "output": output}
            yield "run.output", {"type": "run.output", "timestamp": now, "data": data}
