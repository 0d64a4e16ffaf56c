"""What a sweep does besides the status write, per batch and per sweep: a finishing run's cost rides in
its status UPDATE, subscribers keep their reads for the sweep (runs.per_sweep), and each credential's
last good answer is written once per sweep. Real loopback HTTP to the fake provider, on SQLite and on
PostgreSQL (DATABASE_URL)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alerts.models import Event, Rule
from insights.costing import cost_of
from insights.models import Price
from providers.fake import state as S
from providers.models import Credential
from runs.models import Run, Status
from runs.sync import record_answers, sync_due_runs
from runs.tracking import track_run
from webhooks.models import WebhookDelivery, WebhookEndpoint

BATCH = 4
N_RUNS = 10  # three batches of BATCH


@pytest.fixture
def cloud(org, make_provider, fake):
    """A list-served provider (Comfy Cloud v1): a batch is answered by one list call."""
    return make_provider(org, "Cloud", "comfycloud", fake.base_url("comfycloud"), fake.secret("comfycloud"))


def finished_runs(fake, provider, n=N_RUNS, status=S.SUCCEEDED) -> list[Run]:
    runs = []
    for _ in range(n):
        fake_run = fake.add_run(provider.kind, script=((0.0, status),))
        runs.append(track_run(provider, fake_run.external_id)[0])
    return runs


def sweep_in_batches() -> tuple[list[str], int]:
    """Every in-flight run due, swept BATCH at a time; the statements it ran and how many it claimed."""
    now = timezone.now() + timedelta(seconds=1)
    Run.objects.in_flight().update(next_sync_after=now, started=now - timedelta(seconds=30))
    with CaptureQueriesContext(connection) as queries:
        stats = sync_due_runs(limit=BATCH, now=now, archive=False)
    assert stats.batches == 3 and stats.errors == 0
    return [q["sql"] for q in queries.captured_queries], stats.claimed


def reading(statements: list[str], table: str) -> list[str]:
    return [sql for sql in statements if sql.startswith("SELECT") and f'FROM "{table}"' in sql]


def test_every_run_a_batch_finishes_is_costed_by_the_update_that_finishes_it(fake, cloud):
    Price.objects.create(provider=cloud, gpu="", per_gpu_second=Decimal("0.00125"))
    runs = finished_runs(fake, cloud)
    statements, claimed = sweep_in_batches()
    assert claimed == N_RUNS
    prices = {"": Price.objects.get(provider=cloud)}
    for run in Run.objects.filter(pk__in=[r.pk for r in runs]):
        assert run.status == Status.SUCCEEDED and run.cost is not None
        assert (run.cost, run.cost_source) == cost_of(
            prices, run.gpu, run.gpu_seconds, run.started, run.finished, run.status
        )
    # The cost is written by the status UPDATE itself, and the prices are read once for the sweep.
    cost_writes = [sql for sql in statements if sql.startswith("UPDATE") and '"cost"' in sql]
    assert cost_writes and all('"status"' in sql for sql in cost_writes)
    assert len(reading(statements, "insights_price")) == 1
    # Runs are read once per sweep (its check for stale submissions), never read back per batch to be costed.
    assert len(reading(statements, "runs_run")) == 1


def test_a_price_saved_between_sweeps_costs_the_next_sweeps_runs(fake, cloud):
    first = finished_runs(fake, cloud, n=3)
    sweep_in_batches_of_any_size()
    assert set(Run.objects.filter(pk__in=[r.pk for r in first]).values_list("cost", flat=True)) == {None}
    Price.objects.create(provider=cloud, gpu="", per_run=Decimal("0.5"))
    second = finished_runs(fake, cloud, n=3)
    sweep_in_batches_of_any_size()
    assert set(Run.objects.filter(pk__in=[r.pk for r in second]).values_list("cost", flat=True)) == {Decimal("0.5")}


def sweep_in_batches_of_any_size() -> None:
    now = timezone.now() + timedelta(seconds=1)
    Run.objects.in_flight().update(next_sync_after=now, started=now - timedelta(seconds=30))
    assert sync_due_runs(now=now, archive=False).errors == 0


def test_an_organization_without_rules_or_endpoints_is_asked_once_per_sweep(fake, cloud):
    finished_runs(fake, cloud)
    statements, _ = sweep_in_batches()
    assert len(reading(statements, "alerts_rule")) == 1
    assert len(reading(statements, "webhooks_webhookendpoint")) == 1


def test_a_rule_and_an_endpoint_added_between_sweeps_see_the_next_sweeps_runs(org, fake, cloud):
    finished_runs(fake, cloud, n=2, status=S.FAILED)
    sweep_in_batches_of_any_size()
    assert not Event.objects.exists() and not WebhookDelivery.objects.exists()
    Rule.objects.create(organization=org, name="Failures", kind=Rule.Kind.RUN_FAILED)
    endpoint = WebhookEndpoint(organization=org, url="https://hooks.example.com/x", events=[])
    endpoint.rotate_secret()
    endpoint.save()
    failed = finished_runs(fake, cloud, n=2, status=S.FAILED)
    sweep_in_batches_of_any_size()
    assert set(Event.objects.values_list("run_id", flat=True)) == {run.pk for run in failed}
    assert {d.payload["data"]["run"]["id"] for d in WebhookDelivery.objects.all()} == {str(r.code) for r in failed}


def test_a_credentials_last_good_answer_is_written_once_per_sweep(fake, cloud):
    finished_runs(fake, cloud)
    statements, _ = sweep_in_batches()
    writes = [sql for sql in statements if sql.startswith('UPDATE "providers_credential"')]
    assert len(writes) == 1 and '"last_ok"' in writes[0]
    credential = Credential.objects.get(provider=cloud)
    assert credential.last_ok is not None and credential.latest_outcome == "ok"


def test_the_last_good_answer_never_moves_back_and_an_answer_before_a_failure_stays_older(cloud):
    credential = Credential.objects.get(provider=cloud)
    now = timezone.now()
    Credential.objects.filter(pk=credential.pk).update(last_ok=now, last_failure=now + timedelta(seconds=5))
    record_answers({credential.pk: now - timedelta(seconds=3)})
    credential.refresh_from_db()
    assert credential.last_ok == now and credential.latest_outcome == "failing"
    record_answers({credential.pk: now + timedelta(seconds=8)})
    credential.refresh_from_db()
    assert credential.last_ok == now + timedelta(seconds=8) and credential.latest_outcome == "ok"
