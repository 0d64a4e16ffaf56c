from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from providers.clients.base import OutputKind, OutputRef, RunError, RunSnapshot, RunStatus
from runs.applying import apply_snapshot, mark_status, record_outputs
from runs.models import IN_FLIGHT, TERMINAL, EventSource, Run, RunEvent, Status

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def snap(status: RunStatus, **fields) -> RunSnapshot:
    return RunSnapshot(external_id="ext", status=status, provider_status=fields.pop("raw", status.value), **fields)


@pytest.fixture
def run(provider, make_run):
    return make_run(provider)


def test_it_moves_forward_and_records_each_change_with_its_source(run):
    assert apply_snapshot(run, snap(RunStatus.QUEUED, queued=T0), EventSource.POLL)
    assert apply_snapshot(
        run, snap(RunStatus.RUNNING, started=T0 + timedelta(seconds=5), progress=0.5), EventSource.WEBHOOK
    )
    assert apply_snapshot(run, snap(RunStatus.SUCCEEDED, finished=T0 + timedelta(seconds=65)), EventSource.POLL)
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED
    assert run.progress == 1.0
    assert run.queue_seconds == 5.0
    assert run.run_seconds == 60.0
    events = list(run.events.values_list("from_status", "to_status", "source"))
    assert events == [
        ("pending", "queued", "poll"),
        ("queued", "running", "webhook"),
        ("running", "succeeded", "poll"),
    ]


def test_it_never_reverts_a_terminal_status(run):
    apply_snapshot(run, snap(RunStatus.FAILED, error=RunError("boom", node_id="3")), EventSource.POLL)
    for stale in (RunStatus.RUNNING, RunStatus.QUEUED, RunStatus.SUCCEEDED, RunStatus.CANCELLED):
        assert not apply_snapshot(run, snap(stale), EventSource.POLL)
    run.refresh_from_db()
    assert run.status == Status.FAILED
    assert run.error["message"] == "boom"
    assert RunEvent.objects.filter(run=run).count() == 1


def test_it_ignores_a_stale_earlier_in_flight_status(run):
    apply_snapshot(run, snap(RunStatus.RUNNING, progress=0.6, live_status="Executing KSampler"), EventSource.POLL)
    assert not apply_snapshot(run, snap(RunStatus.QUEUED, progress=0.0), EventSource.POLL)
    run.refresh_from_db()
    assert (run.status, run.progress, run.live_status) == ("running", 0.6, "Executing KSampler")


def test_it_updates_progress_without_a_status_change(run):
    apply_snapshot(run, snap(RunStatus.RUNNING, progress=0.2), EventSource.POLL)
    assert not apply_snapshot(
        run, snap(RunStatus.RUNNING, progress=0.7, live_status="Executing VAEDecode"), EventSource.POLL
    )
    run.refresh_from_db()
    assert (run.progress, run.live_status) == (0.7, "Executing VAEDecode")
    assert run.events.count() == 1


def test_it_loses_the_race_gracefully_when_another_worker_applied_first(run):
    stale_copy = Run.objects.get(pk=run.pk)
    assert apply_snapshot(run, snap(RunStatus.SUCCEEDED), EventSource.POLL)
    # The second worker read "pending" before the first one wrote: its conditional update matches nothing.
    assert not apply_snapshot(stale_copy, snap(RunStatus.FAILED), EventSource.POLL)
    assert stale_copy.status == Status.SUCCEEDED
    assert Run.objects.get(pk=run.pk).status == Status.SUCCEEDED
    assert RunEvent.objects.filter(run=run).count() == 1


def test_it_ignores_unknown_snapshots(run):
    assert not apply_snapshot(run, snap(RunStatus.UNKNOWN, raw="not_found"), EventSource.POLL)
    assert Run.objects.get(pk=run.pk).status == Status.PENDING


def test_it_upserts_outputs_by_key_and_refreshes_expiring_urls(run):
    first = OutputRef(key="9/a.png", filename="a.png", kind=OutputKind.IMAGE, url="https://x/a.png?sig=1")
    apply_snapshot(run, snap(RunStatus.RUNNING, outputs=(first,)), EventSource.POLL)
    resigned = OutputRef(key="9/a.png", filename="a.png", kind=OutputKind.IMAGE, url="https://x/a.png?sig=2")
    second = OutputRef(key="9/b.png", filename="b.png", kind=OutputKind.IMAGE, url="https://x/b.png")
    apply_snapshot(run, snap(RunStatus.SUCCEEDED, outputs=(resigned, second)), EventSource.POLL)
    run.refresh_from_db()
    assert run.n_outputs == 2
    assert sorted(run.outputs.values_list("provider_url", flat=True)) == ["https://x/a.png?sig=2", "https://x/b.png"]


def test_it_keeps_finished_after_started_despite_provider_clock_skew(run):
    apply_snapshot(run, snap(RunStatus.RUNNING, started=T0), EventSource.POLL)
    apply_snapshot(run, snap(RunStatus.SUCCEEDED, finished=T0 - timedelta(seconds=3)), EventSource.POLL)
    run.refresh_from_db()
    assert run.finished >= run.started


def test_the_database_refuses_finished_before_started(run):
    with pytest.raises(IntegrityError), transaction.atomic():
        Run.objects.filter(pk=run.pk).update(started=T0, finished=T0 - timedelta(seconds=1))


def test_the_database_refuses_a_duplicate_external_id(provider, make_run):
    make_run(provider, "same")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_run(provider, "same")


def test_mark_records_a_reconciler_decision_with_its_reason(run):
    assert mark_status(run, Status.LOST, EventSource.RECONCILER, "Deploy no longer knows this run.")
    run.refresh_from_db()
    assert run.status == Status.LOST
    assert run.error["message"] == "Deploy no longer knows this run."
    assert run.events.get().source == "reconciler"


def test_a_resigned_link_gives_an_abandoned_archive_a_fresh_try(run):
    old = OutputRef(key="9/a.png", filename="a.png", kind=OutputKind.IMAGE, url="https://x/a.png?sig=1")
    apply_snapshot(run, snap(RunStatus.RUNNING, outputs=(old,)), EventSource.POLL)
    output = run.outputs.get()
    output.next_archive_after, output.archive_attempts = None, 3
    output.save()
    new = OutputRef(key="9/a.png", filename="a.png", kind=OutputKind.IMAGE, url="https://x/a.png?sig=2")
    apply_snapshot(run, snap(RunStatus.RUNNING, outputs=(new,)), EventSource.POLL)
    output.refresh_from_db()
    assert (output.archive_attempts, output.next_archive_after is not None) == (0, True)


def test_apply_many_writes_a_batch_and_leaves_runs_that_changed_meanwhile(provider, make_run):
    from runs.applying import apply_many

    runs = [make_run(provider) for _ in range(4)]
    # Another worker moved runs[1] to failed after we read it.
    Run.objects.filter(pk=runs[1].pk).update(status=Status.FAILED)
    out = OutputRef(key="9/a.png", filename="a.png", kind=OutputKind.IMAGE, url="https://x/a.png")
    items = [
        (runs[0], snap(RunStatus.SUCCEEDED, outputs=(out,), finished=T0), {"sync_failures": 0}),
        (runs[1], snap(RunStatus.SUCCEEDED), {"sync_failures": 0}),
        (runs[2], snap(RunStatus.RUNNING, progress=0.4, live_status="Executing KSampler"), {"sync_failures": 0}),
        (runs[3], snap(RunStatus.UNKNOWN, raw="not_found"), None),
    ]
    assert apply_many(items, EventSource.POLL) == [True, False, True, False]
    fresh = {r.pk: r for r in Run.objects.filter(pk__in=[r.pk for r in runs])}
    assert (fresh[runs[0].pk].status, fresh[runs[0].pk].n_outputs, fresh[runs[0].pk].finished) == ("succeeded", 1, T0)
    assert fresh[runs[1].pk].status == "failed" and runs[1].status == "failed"  # re-read, not overwritten
    assert (fresh[runs[2].pk].status, fresh[runs[2].pk].progress) == ("running", 0.4)
    assert fresh[runs[3].pk].status == "pending"
    assert RunEvent.objects.filter(run__in=runs).count() == 2


def test_the_output_counter_grows_with_the_status_and_stays_true_when_another_writer_won(run):
    from runs.models import RunOutput

    ref = OutputRef(key="9/a.png", filename="a.png", kind=OutputKind.IMAGE, url="https://x/a.png")
    # Another writer (the inbound webhook) stored the same output first; this copy of the run has not seen it.
    other = Run.objects.get(pk=run.pk)
    record_outputs(other, [ref])
    assert run.n_outputs == 0
    second = OutputRef(key="9/b.png", filename="b.png", kind=OutputKind.IMAGE, url="https://x/b.png")
    apply_snapshot(run, snap(RunStatus.SUCCEEDED, outputs=(ref, second)), EventSource.POLL)
    run.refresh_from_db()
    assert run.n_outputs == RunOutput.objects.filter(run=run).count() == 2
    # Without a race the counter rides along in the status UPDATE: no second UPDATE of the run.
    fresh = Run.objects.get(pk=make_second(run).pk)
    with CaptureQueriesContext(connection) as queries:
        apply_snapshot(fresh, snap(RunStatus.SUCCEEDED, outputs=(ref,)), EventSource.POLL)
    updates = [q["sql"] for q in queries if q["sql"].startswith('UPDATE "runs_run"')]
    assert len(updates) == 1 and "n_outputs" in updates[0]
    fresh.refresh_from_db()
    assert fresh.n_outputs == 1 and fresh.status == Status.SUCCEEDED


def make_second(run: Run) -> Run:
    return Run.objects.create(
        organization=run.organization, provider=run.provider, credential=run.credential, external_id="second"
    )


def test_its_statuses_are_the_client_contracts():
    """A run stores what the clients report (UNKNOWN aside), and the final ones are the contract's."""
    assert {s.value for s in Status} == {s.value for s in RunStatus} - {RunStatus.UNKNOWN.value}
    assert {s.value for s in TERMINAL} == {s.value for s in RunStatus if s.is_terminal}
    assert IN_FLIGHT == (Status.PENDING, Status.QUEUED, Status.RUNNING)
    assert set(IN_FLIGHT) | set(TERMINAL) == set(Status)
