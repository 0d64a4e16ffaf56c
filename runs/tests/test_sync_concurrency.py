"""Concurrency guarantees of the sync engine, on a real database with real commits.

Two sweeps at once (threads, one DB connection each) never claim the same run and apply each status
change exactly once; a worker that dies mid-sweep loses nothing once its lease expires. They run on
both databases: PostgreSQL skips the rows another claim has locked, SQLite runs one write transaction at
a time (comfytrack.leases). Only the claim thread of a sweep is PostgreSQL's alone.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from providers.fake import state as S
from runs import sync
from runs.fetching import fetch_batch
from runs.models import Run, RunEvent, Status
from runs.sync import LEASE, SweepStats, apply_result, claim_due_runs, sync_due_runs

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="a sweep claims on a thread of its own on PostgreSQL only; CI runs it with DATABASE_URL",
)
N_RUNS = 120


@pytest.fixture
def runs(org, make_provider, fake):
    kind = "comfydeploy"
    provider = make_provider(org, kind=kind, base_url=fake.base_url(kind), secret=fake.secret(kind))
    fake.set_faults(latency_ms=5)  # enough for the two sweeps to overlap
    fake_runs = [fake.add_run(kind, f"run-{i:04d}", script=((0.0, S.RUNNING),)) for i in range(N_RUNS)]
    created = [
        Run.objects.create(
            organization=org, provider=provider, credential=provider.credentials.first(), external_id=f.external_id
        )
        for f in fake_runs
    ]
    return fake_runs, created


def in_threads(target, count: int = 2) -> list:
    """Run `target()` in `count` threads released together; each thread closes its own DB connection."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list = []

    def work(index: int) -> None:
        try:
            barrier.wait(5)
            results[index] = target()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


def make_all_due(now=None) -> None:
    Run.objects.in_flight().update(next_sync_after=now or timezone.now())


@pytest.mark.django_db(transaction=True)
def test_it_never_claims_a_run_twice_nor_applies_a_change_twice(runs, fake, monkeypatch):
    fake_runs, created = runs
    claimed: list[int] = []
    lock = threading.Lock()
    real_claim = sync.claim_due_runs

    def recording_claim(limit, now=None):
        batch = real_claim(limit, now=now)
        with lock:
            claimed.extend(run.pk for run in batch)
        return batch

    monkeypatch.setattr(sync, "claim_due_runs", recording_claim)

    for phase in (None, S.SUCCEEDED):
        if phase:
            for fake_run in fake_runs:
                fake_run.force(phase)
        claimed.clear()
        make_all_due()
        stats = in_threads(lambda: sync_due_runs(limit=10))
        # Both sweeps did part of the work, and no run was claimed twice.
        assert all(s.claimed > 0 for s in stats), [s.claimed for s in stats]
        assert sum(s.claimed for s in stats) == len(claimed) == N_RUNS
        assert Counter(claimed).most_common(1)[0][1] == 1

    assert set(Run.objects.values_list("status", flat=True)) == {Status.SUCCEEDED}
    per_run = Counter(RunEvent.objects.values_list("run_id", flat=True))
    assert per_run == {run.pk: 2 for run in created}  # pending→running, running→succeeded: once each
    for run_id in list(per_run)[:5]:
        pairs = list(RunEvent.objects.filter(run_id=run_id).values_list("from_status", "to_status"))
        assert pairs == [("pending", "running"), ("running", "succeeded")]


@pytest.mark.django_db(transaction=True)
def test_it_applies_once_when_two_workers_hold_the_same_runs(runs, fake):
    """A lease that expired while its worker was still busy: both apply, the conditional UPDATE lets one win."""
    _, created = runs
    now = timezone.now()
    make_all_due(now)
    first = claim_due_runs(N_RUNS, now=now)
    second = claim_due_runs(N_RUNS, now=now + LEASE.length + timedelta(seconds=1))  # the first lease "expired"
    assert {r.pk for r in first} == {r.pk for r in second} == {r.pk for r in created}
    answers = fetch_batch(first)

    def apply_all(batch):
        def go():
            stats = SweepStats()
            for run in batch:
                apply_result(run, answers[run.pk], stats)
            return stats

        return go

    barrier_targets = iter([apply_all(first), apply_all(second)])
    stats = in_threads(lambda: next(barrier_targets)())
    assert sum(s.changed for s in stats) == N_RUNS
    assert Counter(RunEvent.objects.values_list("run_id", flat=True)) == {run.pk: 1 for run in created}
    assert set(Run.objects.values_list("status", flat=True)) == {Status.RUNNING}


@pytest.mark.django_db(transaction=True)
def test_it_finishes_a_killed_workers_batch_after_its_lease_expires(runs, fake):
    """Runs on SQLite too: leases need no SKIP LOCKED, only the conditional claim."""
    _, created = runs
    now = timezone.now()
    make_all_due(now)
    abandoned = claim_due_runs(50, now=now)  # the worker is "killed" here: it never fetches or applies
    assert len(abandoned) == 50

    # Meanwhile the other runs are swept; the leased ones are left alone.
    stats = sync_due_runs(now=now + timedelta(seconds=1))
    assert stats.claimed == N_RUNS - 50
    leased = Run.objects.filter(pk__in=[r.pk for r in abandoned])
    assert set(leased.values_list("status", flat=True)) == {Status.PENDING}

    # After the lease expires, the next sweep finishes the job.
    stats = sync_due_runs(now=now + LEASE.length + timedelta(seconds=1))
    assert stats.changed == 50  # (the others are due again by then too, but have nothing new)
    assert set(Run.objects.values_list("status", flat=True)) == {Status.RUNNING}
    assert set(Run.objects.values_list("sync_locked_until", flat=True)) == {None}
    assert Counter(RunEvent.objects.values_list("run_id", flat=True)) == {run.pk: 1 for run in created}


def database_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_sweep_claims_its_next_batches_on_a_thread_of_its_own_and_closes_its_connection(runs, monkeypatch):
    _, created = runs
    claimed_on: list[str] = []
    real_claim = sync.claim_due_runs

    def recording_claim(limit, now=None):
        claimed_on.append(threading.current_thread().name)
        return real_claim(limit, now=now)

    monkeypatch.setattr(sync, "claim_due_runs", recording_claim)
    make_all_due()
    before = database_backends()
    stats = sync_due_runs(limit=50)
    assert (stats.claimed, stats.batches, stats.changed) == (N_RUNS, 3, N_RUNS)
    # The first claim runs inline; it came back full, so the next ones (50, 20, then none) ran on the claim
    # thread while this one applied.
    assert claimed_on[0] == threading.current_thread().name
    assert len(claimed_on) == 4 and all(name.startswith("sync-claim") for name in claimed_on[1:])
    assert set(Run.objects.values_list("status", flat=True)) == {Status.RUNNING}
    assert Counter(RunEvent.objects.values_list("run_id", flat=True)) == {run.pk: 1 for run in created}
    assert set(Run.objects.values_list("sync_locked_until", flat=True)) == {None}
    for _ in range(50):  # the claim thread's backend goes away once its connection is closed
        if database_backends() == before:
            break
        time.sleep(0.05)
    assert database_backends() == before
