"""Retention: an organization's `retention_days` limits how long finished runs keep their details.

It spans apps (runs, webhooks), so it lives in the project package: the sync engine (runs) never
imports webhooks, its subscriber.

For each organization with a limit, the runs that finished longer ago lose their status events, their
outputs (rows, archived files and thumbnails in storage) and the organization's finished webhook
deliveries of that age. The runs themselves stay (counts, durations and statistics remain true).
A run in flight is never touched: only runs in a terminal status, with a finish time, qualify.

Deletes go in batches, each its own short transaction, so no lock is held for long and the sweep and
the web keep going. Rows go first, then their files: a failure in between leaves an orphan file in
storage (logged by name), never a row pointing at a missing file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization
from runs.models import TERMINAL, Run, RunEvent, RunOutput
from webhooks.models import WebhookDelivery

logger = logging.getLogger("comfytrack.retention")

BATCH_SIZE = 500


@dataclass
class Pruned:
    organizations: int = 0
    events: int = 0
    outputs: int = 0
    files: int = 0
    deliveries: int = 0
    file_errors: int = 0

    def summary(self) -> str:
        text = (
            f"Pruned {self.organizations} organization(s) with a retention limit: {self.events} event(s), "
            f"{self.outputs} output(s), {self.files} file(s) in storage, {self.deliveries} webhook delivery(ies)"
        )
        if self.file_errors:
            text += f"; {self.file_errors} file(s) could not be deleted from storage (named in the log)"
        return text + "."


def prune_expired(now: datetime | None = None, batch_size: int = BATCH_SIZE) -> Pruned:
    """Apply every organization's retention limit once; returns what was removed."""
    now = now or timezone.now()
    pruned = Pruned()
    limits = Organization.objects.filter(retention_days__isnull=False).values_list("pk", "retention_days")
    for organization_id, days in limits:
        if days is None:  # (excluded by the filter; says so to the type checker)
            continue
        pruned.organizations += 1
        cutoff = now - timedelta(days=days)
        expired = Run.objects.filter(
            organization_id=organization_id, status__in=TERMINAL, finished__isnull=False, finished__lt=cutoff
        ).values("pk")
        _prune_outputs(RunOutput.objects.filter(organization_id=organization_id, run__in=expired), pruned, batch_size)
        pruned.events += _delete_in_batches(RunEvent.objects.filter(run__in=expired), batch_size)
        done = Q(delivered__isnull=False) | Q(failed__isnull=False)
        deliveries = WebhookDelivery.objects.filter(done, endpoint__organization_id=organization_id, created__lt=cutoff)
        pruned.deliveries += _delete_in_batches(deliveries, batch_size)
    return pruned


def _delete_in_batches(queryset, batch_size: int) -> int:
    total = 0
    while ids := list(queryset.order_by().values_list("pk", flat=True)[:batch_size]):
        with transaction.atomic():
            total += queryset.model.objects.filter(pk__in=ids).delete()[0]
    return total


def _prune_outputs(outputs, pruned: Pruned, batch_size: int) -> None:
    storage = RunOutput._meta.get_field("file").storage
    while rows := list(outputs.order_by().values_list("pk", "run_id", "file", "thumbnail")[:batch_size]):
        with transaction.atomic():
            pruned.outputs += RunOutput.objects.filter(pk__in=[row[0] for row in rows]).delete()[0]
            # The run keeps no outputs now: its count says so, as the run page and the API show it.
            Run.objects.filter(pk__in={row[1] for row in rows}).update(n_outputs=0)
        for name in (name for row in rows for name in row[2:] if name):
            try:
                storage.delete(name)
            except Exception:
                pruned.file_errors += 1
                logger.warning("retention: could not delete %s from storage; it is orphaned", name, exc_info=True)
            else:
                pruned.files += 1


def prune_retention() -> str:
    """The daily scheduled task (django-q2): apply every limit; the summary is the task's result."""
    summary = prune_expired().summary()
    logger.info(summary)
    return summary
