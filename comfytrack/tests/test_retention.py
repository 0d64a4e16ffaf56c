"""Retention limits per organization (comfytrack.retention), the command and its daily schedule."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from comfytrack.retention import prune_expired
from runs.models import Run, RunEvent, RunOutput, Status
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db


def aged_run(make_run, provider, days: float, status=Status.SUCCEEDED, **fields) -> Run:
    finished = timezone.now() - timedelta(days=days)
    run = make_run(provider, status=status, finished=finished if status != Status.RUNNING else None, **fields)
    RunEvent.objects.create(run=run, source="poll", from_status="running", to_status=status)
    RunEvent.objects.create(run=run, source="poll", from_status="queued", to_status="running")
    RunOutput.objects.create(run=run, key="k", filename="a.png")
    return run


def test_without_a_limit_nothing_is_ever_removed(org, provider, make_run):
    aged_run(make_run, provider, days=3650)
    pruned = prune_expired()
    assert (pruned.organizations, pruned.events, pruned.outputs) == (0, 0, 0)
    assert RunEvent.objects.count() == 2 and RunOutput.objects.count() == 1


def test_each_organization_keeps_its_own_limit_in_small_batches(org, other_org, provider, make_provider, make_run):
    others = make_provider(other_org, name="Other")
    org.retention_days = 7
    org.save()
    other_org.retention_days = 90
    other_org.save()
    expired = [aged_run(make_run, provider, days=8) for _ in range(3)]
    kept = aged_run(make_run, provider, days=6)
    theirs = aged_run(make_run, others, days=30)
    # Never a run in flight, however old it is.
    flying = aged_run(make_run, provider, days=0, status=Status.RUNNING)
    Run.objects.filter(pk=flying.pk).update(created=timezone.now() - timedelta(days=365))

    pruned = prune_expired(batch_size=2)

    assert (pruned.organizations, pruned.events, pruned.outputs) == (2, 6, 3)
    assert set(RunEvent.objects.values_list("run_id", flat=True)) == {kept.pk, theirs.pk, flying.pk}
    assert set(RunOutput.objects.values_list("run_id", flat=True)) == {kept.pk, theirs.pk, flying.pk}
    assert Run.objects.filter(pk__in=[r.pk for r in expired], n_outputs=0).count() == 3


def test_finished_webhook_deliveries_older_than_the_limit_go_too(org, provider):
    org.retention_days = 1
    org.save()
    endpoint = WebhookEndpoint(organization=org, url="https://hooks.example/x")
    endpoint.rotate_secret()
    endpoint.save()
    old = timezone.now() - timedelta(days=2)
    make = WebhookDelivery.objects.create
    make(endpoint=endpoint, event_id="a", event_type="run.succeeded", payload={}, created=old, delivered=old)
    make(endpoint=endpoint, event_id="b", event_type="run.failed", payload={}, created=old, failed=old)
    pending = make(endpoint=endpoint, event_id="c", event_type="run.failed", payload={}, created=old)
    recent = make(endpoint=endpoint, event_id="d", event_type="run.failed", payload={}, delivered=timezone.now())
    assert prune_expired().deliveries == 2
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {pending.pk, recent.pk}


def test_the_command_prints_what_it_removed(org, provider, make_run):
    org.retention_days = 30
    org.save()
    aged_run(make_run, provider, days=31)
    out = StringIO()
    call_command("prune_retention", stdout=out)
    assert out.getvalue().strip() == (
        "Pruned 1 organization(s) with a retention limit: 2 event(s), 1 output(s), 0 file(s) in storage, "
        "0 webhook delivery(ies)."
    )


def test_the_prune_is_scheduled_daily():
    from importlib import import_module

    from django.apps import apps
    from django_q.models import Schedule

    import_module("runs.migrations.0011_retention_schedule").install(apps, None)
    schedule = Schedule.objects.get(func="comfytrack.retention.prune_retention")
    assert (schedule.schedule_type, schedule.repeats) == ("D", -1)


def test_the_scheduled_task_returns_the_summary(org):
    from comfytrack.retention import prune_retention

    org.retention_days = 5
    org.save()
    assert prune_retention().startswith("Pruned 1 organization(s)")
