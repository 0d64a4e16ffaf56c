"""The sync engine end to end: real loopback HTTP against the fake provider server, all five kinds.

Runs move along by forcing the fake's phases and making them due again (no sleeping); time-dependent
rules (lost, timed out, back-off, Retry-After) use `sync_due_runs(now=...)` or time-machine.
"""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

import pytest
from django.db.models import Field
from django.utils import timezone

from providers.clients.base import RunSnapshot
from providers.fake import state as S
from providers.models import Credential
from providers.tests.e2e import FAULTS, forced
from runs import applying
from runs.fetching import fetch_batch
from runs.models import SWEEP_FIELDS, Run, RunEvent, Status
from runs.sync import DEFAULT_MAX_RUN_TIME, SweepStats, apply_result, claim_due_runs
from runs.tests.sync_helpers import provider_for, sweep, tracked, transitions

KINDS = ["comfydeploy", "comfycloud", "comfyui", "aws_esd", "speedpix"]
# Kinds whose API names the failing node (AWS ESD and SpeedPix only pass a message on).
NODE_ERRORS = {"comfydeploy", "comfycloud", "comfyui"}
# AWS ESD reports "created" until an inference ends: it has no separate running status.
NO_RUNNING = {"aws_esd"}


def running(kind: str) -> Status:
    """What a run in the fake's running phase looks like after a poll."""
    return Status.QUEUED if kind in NO_RUNNING else Status.RUNNING


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


# -- the happy paths ---------------------------------------------------------------------------------


def test_it_follows_a_run_through_every_status_to_its_outputs(org, make_provider, fake, kind):
    provider = provider_for(org, make_provider, fake, kind)
    fake_run, run = tracked(fake, provider, n_outputs=2)

    stats = sweep()
    run.refresh_from_db()
    assert stats.claimed == 1 and stats.errors == 0, run.last_sync_error
    assert run.next_sync_after is not None
    assert run.status == Status.QUEUED and run.last_synced and run.next_sync_after > run.last_synced

    forced(fake, kind, fake_run.external_id, S.RUNNING)
    sweep()
    run.refresh_from_db()
    assert run.status == running(kind)

    forced(fake, kind, fake_run.external_id, S.SUCCEEDED)
    sweep()
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED and run.finished and run.progress == 1.0
    assert run.started is None or run.finished >= run.started
    assert run.next_sync_after is None and run.sync_locked_until is None and run.last_sync_error == ""
    path = ["pending", "queued", "succeeded"] if kind in NO_RUNNING else ["pending", "queued", "running", "succeeded"]
    assert transitions(run) == [(a, b, "poll") for a, b in pairwise(path)]
    assert run.n_outputs == run.outputs.count() == 2
    assert all(o.provider_url.startswith("http://127.0.0.1") for o in run.outputs.all())
    # A finished run is never polled again.
    assert sweep().claimed == 0


def test_it_keeps_the_failing_node_details(org, make_provider, fake, kind):
    provider = provider_for(org, make_provider, fake, kind)
    fake_run, run = tracked(fake, provider, script=((0.0, S.QUEUED),), error=S.default_error())
    sweep()
    forced(fake, kind, fake_run.external_id, S.RUNNING, S.FAILED)
    sweep()
    run.refresh_from_db()
    assert run.status == Status.FAILED, run.last_sync_error
    assert run.error["message"]
    if kind != "comfydeploy":  # ComfyDeploy's run record carries only the failing node's type
        assert "CUDA out of memory" in run.error["message"]
    if kind in NODE_ERRORS:
        assert run.error["node_type"] == "KSampler"
        assert run.error["node_id"] == ("3" if kind != "comfydeploy" else None)
    assert RunEvent.objects.get(run=run, to_status="failed").source == "poll"


def test_claimed_runs_carry_the_sweep_columns_and_load_the_rest_on_access(org, make_provider, fake):
    provider = provider_for(org, make_provider, fake, "comfydeploy")
    _, stored = tracked(fake, provider)
    Run.objects.filter(pk=stored.pk).update(workflow={"1": {"class_type": "SaveImage"}}, error={"message": "x"})
    [claimed] = claim_due_runs(10, now=timezone.now() + timedelta(minutes=1))
    fresh = Run.objects.get(pk=stored.pk)
    assert claimed.get_deferred_fields() == {f.attname for f in Run._meta.concrete_fields if f.name not in SWEEP_FIELDS}
    for name in SWEEP_FIELDS:  # as the database has them (the lease included), already converted
        field = Run._meta.get_field(name)
        assert isinstance(field, Field)  # a column of the table, not a reverse relation
        assert getattr(claimed, field.attname) == getattr(fresh, field.attname)
    assert claimed.sync_locked_until is not None and claimed.created.tzinfo is not None
    assert claimed.provider == provider and not claimed._state.adding
    assert claimed.workflow == {"1": {"class_type": "SaveImage"}}  # deferred: loaded on first access
    assert claimed.error == {"message": "x"}
    claimed.live_status = "saved"
    claimed.save(update_fields=["live_status"])
    assert Run.objects.get(pk=stored.pk).live_status == "saved"


def test_it_syncs_many_runs_of_every_kind_in_one_sweep(org, make_provider, fake):
    runs = []
    for kind in KINDS:
        provider = provider_for(org, make_provider, fake, kind)
        runs += [tracked(fake, provider, script=((0.0, S.SUCCEEDED),))[1] for _ in range(3)]
    stats = sweep()
    assert (stats.claimed, stats.changed, stats.errors) == (15, 15, 0)
    assert set(Run.objects.values_list("status", flat=True)) == {Status.SUCCEEDED}


# -- faults ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", FAULTS)
def test_it_backs_off_on_a_fault_and_recovers_when_it_clears(org, make_provider, fake, kind, mode):
    provider = provider_for(org, make_provider, fake, kind, timeout_seconds=0.3)
    fake_run, run = tracked(fake, provider)
    # Another provider in the same sweep keeps working: one bad provider never stalls the sweep.
    other_kind = "comfyui" if kind != "comfyui" else "comfydeploy"
    _, healthy = tracked(fake, provider_for(org, make_provider, fake, other_kind), script=((0.0, S.RUNNING),))
    fake.set_faults(mode=mode, only_kind=kind, stall_seconds=1.0, retry_after=30)

    start = timezone.now()
    stats = sweep(start)
    run.refresh_from_db()
    healthy.refresh_from_db()
    assert healthy.status == Status.RUNNING and healthy.sync_failures == 0
    assert stats.errors == 1 and run.status == Status.PENDING
    assert run.sync_failures == 1 and run.last_sync_error and run.sync_locked_until is None
    assert "secret" not in run.last_sync_error.lower()
    credential = Credential.objects.get(provider=provider)
    # The credential's breaker opens: 1 s, or the provider's Retry-After.
    wait = timedelta(seconds=30 if mode == "429" else 1)
    assert credential.blocked_until is not None
    assert credential.consecutive_failures == 1 and credential.blocked_until >= start + wait
    assert credential.latest_outcome == "failing" and credential.last_error == run.last_sync_error
    # Its runs wait for the breaker, even when due: only the healthy run is claimed.
    # (Within a lease of the sweep's start: a later `now` would see the healthy run's lease as expired.)
    assert sweep(start + min(wait - timedelta(milliseconds=500), timedelta(seconds=10))).claimed == 1
    run.refresh_from_db()
    assert run.sync_failures == 1

    # Half-open: one probe decides; still failing, the breaker opens again for longer.
    later = credential.blocked_until + timedelta(milliseconds=1)
    sweep(later)
    run.refresh_from_db()
    credential.refresh_from_db()
    assert run.sync_failures == 2 and credential.consecutive_failures == 2
    assert credential.blocked_until is not None
    assert credential.blocked_until >= later + (wait if mode == "429" else timedelta(seconds=2))

    fake.set_faults()
    forced(fake, kind, fake_run.external_id, S.RUNNING)
    stats = sweep(credential.blocked_until + timedelta(milliseconds=1))
    run.refresh_from_db()
    assert run.status == running(kind) and (run.sync_failures, run.last_sync_error) == (0, "")
    credential.refresh_from_db()
    assert credential.blocked_until is None and credential.consecutive_failures == 0
    assert credential.latest_outcome == "ok"
    assert transitions(run) == [("pending", running(kind), "poll")]


def test_it_opens_the_circuit_after_repeated_5xx(org, make_provider, fake):
    provider = provider_for(org, make_provider, fake, "comfydeploy")
    runs = [tracked(fake, provider)[1] for _ in range(3)]
    fake.set_faults(mode="5xx", only_kind="comfydeploy")
    now = timezone.now()
    for step in range(3):
        sweep(now + timedelta(minutes=step))
    credential = Credential.objects.get(provider=provider)
    assert credential.consecutive_failures >= 3 and credential.failing_since and credential.blocked_until
    assert "502" in credential.last_error
    assert all(r.status == Status.PENDING for r in Run.objects.filter(pk__in=[r.pk for r in runs]))


def test_it_never_moves_a_run_back_on_a_stale_answer(org, make_provider, fake, kind):
    provider = provider_for(org, make_provider, fake, kind)
    fake_run, run = tracked(fake, provider)
    sweep()
    forced(fake, kind, fake_run.external_id, S.RUNNING)
    sweep()
    forced(fake, kind, fake_run.external_id, S.SUCCEEDED)
    fake.set_faults(mode="stale", only_kind=kind)
    sweep()  # a stale replica still says "running"
    run.refresh_from_db()
    assert run.status == running(kind)
    fake.set_faults()
    sweep()
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED

    # Even if a stale answer reaches a finished run (a late poll), it stays finished.
    fake.set_faults(mode="stale", only_kind=kind)
    results = fetch_batch([Run.objects.select_related("provider", "credential").get(pk=run.pk)])
    result = results[run.pk]
    assert isinstance(result, RunSnapshot), result
    assert result.status.value in ("running", "queued")
    apply_result(run, results[run.pk], SweepStats())
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED and run.next_sync_after is None
    assert [t[1] for t in transitions(run)][-1] == "succeeded" and len(transitions(run)) == len(
        {t[1] for t in transitions(run)}
    )


# -- credentials -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["comfydeploy", "comfycloud", "aws_esd", "speedpix"])
def test_it_flags_a_refused_credential_and_leaves_its_runs_alone(org, make_provider, fake, kind):
    wrong = {key: f"wrong-{value}-but-long" for key, value in fake.secret(kind).items()}
    if kind == "aws_esd":
        wrong["username"] = fake.secret(kind)["username"]
    provider = provider_for(org, make_provider, fake, kind, secret=wrong)
    runs = [tracked(fake, provider)[1] for _ in range(3)]
    now = timezone.now()
    stats = sweep(now)
    assert stats.errors == 3
    credential = Credential.objects.get(provider=provider)
    assert credential.blocked_until is not None
    assert credential.failing_since and credential.blocked_until >= now + timedelta(minutes=59)
    assert credential.last_error and all(value not in credential.last_error for value in wrong.values())
    assert all(value not in r.last_sync_error for r in Run.objects.all() for value in wrong.values())

    # Not hammered: while blocked, its runs are not claimed and the provider sees no request.
    requests = len(fake.state.requests)
    assert sweep(now + timedelta(minutes=30)).claimed == 0
    assert len(fake.state.requests) == requests
    assert all(r.status == Status.PENDING for r in Run.objects.filter(pk__in=[r.pk for r in runs]))


# -- reconciliation: lost and timed out -----------------------------------------------------------------


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "comfyui"])
def test_it_marks_an_unknown_run_lost_only_after_the_grace_period(org, make_provider, fake, kind):
    """Providers with durable records: a run they stop knowing is lost after `lost_after` (10 min)."""
    provider = provider_for(org, make_provider, fake, kind)
    fake_run, run = tracked(fake, provider)
    sweep()
    forced(fake, kind, fake_run.external_id, S.VANISHED)
    now = timezone.now()
    sweep(now)
    run.refresh_from_db()
    assert run.status == Status.QUEUED and run.unknown_since == now and run.lost_at == now + timedelta(minutes=10)
    sweep(now + timedelta(minutes=9))
    run.refresh_from_db()
    assert run.status == Status.QUEUED and run.unknown_since == now
    sweep(now + timedelta(minutes=10, seconds=1))
    run.refresh_from_db()
    assert run.status == Status.LOST and "no longer knows" in run.error["message"]
    assert transitions(run)[-1] == ("queued", "lost", "reconciler")
    # No finish or run time of comfytrack's making; when it was last seen and marked lost stay on record.
    assert run.finished is None and run.run_seconds is None
    assert run.unknown_since == now and run.lost_at == now + timedelta(minutes=10, seconds=1)


def test_it_forgets_an_unknown_spell_when_the_run_comes_back(org, make_provider, fake):
    provider = provider_for(org, make_provider, fake, "comfydeploy")
    fake_run, run = tracked(fake, provider, script=((0.0, S.VANISHED),))
    now = timezone.now()
    sweep(now)
    run.refresh_from_db()
    assert run.unknown_since == now and run.status == Status.PENDING
    fake_run.force(S.RUNNING)
    sweep(now + timedelta(minutes=11))
    run.refresh_from_db()
    assert run.status == Status.RUNNING and run.unknown_since is None


def test_it_honours_a_provider_lost_after_setting(org, make_provider, fake):
    provider = provider_for(org, make_provider, fake, "comfyui", lost_after_minutes=1)
    _, run = tracked(fake, provider, script=((0.0, S.VANISHED),))
    now = timezone.now()
    sweep(now)
    sweep(now + timedelta(seconds=61))
    run.refresh_from_db()
    assert run.status == Status.LOST


def test_it_times_out_a_run_that_never_finishes(org, make_provider, fake, kind):
    provider = provider_for(org, make_provider, fake, kind)
    fake_run, run = tracked(fake, provider, script=((0.0, S.RUNNING),))
    sweep()
    run.refresh_from_db()
    assert run.status == running(kind)
    stats = sweep(run.created + DEFAULT_MAX_RUN_TIME + timedelta(seconds=1))
    run.refresh_from_db()
    assert stats.timed_out == 1 and run.status == Status.TIMED_OUT and run.next_sync_after is None
    assert "gave up waiting" in run.error["message"] and "24 h" in run.error["message"]
    assert transitions(run)[-1] == (running(kind), "timed_out", "reconciler")
    # The provider finishing later does not change it.
    forced(fake, kind, fake_run.external_id, S.SUCCEEDED)
    assert sweep().claimed == 0


def test_it_keeps_the_sweep_alive_when_applying_one_run_crashes(org, make_provider, fake, monkeypatch):
    provider = provider_for(org, make_provider, fake, "comfydeploy")
    _, bad = tracked(fake, provider, script=((0.0, S.RUNNING),))
    _, good = tracked(fake, provider, script=((0.0, S.RUNNING),))
    original = applying.plan_update

    def plan(run, snapshot, now, extra):
        if run.pk == bad.pk:
            raise RuntimeError("boom")
        return original(run, snapshot, now, extra)

    # The batch write fails as a whole, then each run is applied alone: only the bad one is guarded.
    monkeypatch.setattr(applying, "plan_update", plan)
    now = timezone.now()
    sweep(now)
    bad.refresh_from_db()
    good.refresh_from_db()
    assert good.status == Status.RUNNING
    assert bad.next_sync_after is not None
    assert bad.status == Status.PENDING and bad.next_sync_after >= now + timedelta(minutes=5)
    assert bad.last_sync_error == "Internal error while syncing." and bad.sync_locked_until is None
