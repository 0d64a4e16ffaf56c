"""Long-running loops: they survive failed passes (a terminated database backend), stop cleanly on
SIGTERM (a real `manage.py sync_runs` process), and hand over between scheduled executions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import OperationalError, connection, connections
from django.utils import timezone

from comfytrack import loops, qcluster
from providers.fake import state as S
from runs.models import LoopTurn, Run, Status
from runs.sync import sync_due_runs

ROOT = Path(__file__).resolve().parents[2]
on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="terminates PostgreSQL backends; CI runs it with DATABASE_URL"
)


# run_loop closes this thread's stale database connections before each pass, so its tests use the database:
# unmarked, pytest-django refuses that on a connection an earlier test left open, and no pass ever runs.
# The loops have a time limit, so a loop that goes wrong fails its test instead of hanging the suite.
@pytest.mark.django_db
def test_a_loop_sums_its_passes_waits_when_idle_and_ends_on_time():
    passes = iter([(3, True), (0, False), (2, True)])
    calls = []

    def one_pass(left, should_stop):
        calls.append(time.monotonic())
        return next(passes, (0, False))

    started = time.monotonic()
    total = loops.run_loop(one_pass, idle_sleep=0.2, seconds=0.5)
    assert total == 5
    assert 0.5 <= time.monotonic() - started < 2.0
    assert calls[2] - calls[1] >= 0.2  # the idle pass was followed by a pause


@pytest.mark.django_db
def test_a_failing_pass_is_retried_after_a_pause_and_the_loop_goes_on(monkeypatch, caplog):
    monkeypatch.setattr(loops, "FIRST_BACKOFF", 0.05)
    results = iter([OperationalError("the connection is closed"), RuntimeError("a bug"), (4, True)])
    stop = threading.Event()

    def one_pass(left, should_stop):
        result = next(results)
        if isinstance(result, Exception):
            raise result
        stop.set()
        return result

    assert loops.run_loop(one_pass, idle_sleep=0.01, stop=stop, seconds=30) == 4
    messages = [r.getMessage() for r in caplog.records]
    assert any("the connection is closed" in m for m in messages)
    assert any("RuntimeError" in m for m in messages)


@pytest.mark.django_db
def test_sigterm_asks_the_pass_to_stop_and_the_loop_returns():
    seen = []

    def one_pass(left, should_stop):
        os.kill(os.getpid(), signal.SIGTERM)
        seen.append(should_stop())
        return 1, True

    previous = signal.getsignal(signal.SIGTERM)
    assert loops.run_loop(one_pass, idle_sleep=0.01, seconds=30) == 1
    assert seen == [True]
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is restored


@pytest.mark.django_db
def test_a_newer_loop_takes_the_turn_and_the_older_one_ends_after_its_pass(monkeypatch):
    monkeypatch.setattr(loops, "BEAT_EVERY", 0.0)
    passes = []

    def one_pass(left, should_stop):
        passes.append(left)
        if len(passes) == 2:
            loops.take_turn("sync")  # the next scheduled execution starts
        return 1, True

    assert loops.run_loop(one_pass, idle_sleep=0.01, seconds=30, turn="sync") == 2


@pytest.mark.django_db
def test_one_of_several_starting_workers_starts_a_loop_nobody_runs():
    assert loops.claim_start("sync") is True
    assert loops.claim_start("sync") is False  # the start is under way
    holder = loops.take_turn("sync")
    assert loops.claim_start("sync") is False  # a live loop holds it
    LoopTurn.objects.filter(name="sync").update(beat=timezone.now() - loops.TURN_STALE_AFTER)
    assert loops.claim_start("sync") is True  # it stopped beating: dead
    assert not loops.keep_turn("sync", holder)


@pytest.mark.django_db
def test_a_holder_process_that_is_gone_is_dead_at_once():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    gone = f"{loops.holder_id().split(':')[0]}:{child.pid}:abcd1234"
    LoopTurn.objects.create(name="sync", holder=gone, beat=timezone.now())
    assert loops.claim_start("sync") is True


@pytest.mark.django_db
def test_a_starting_q_cluster_queues_each_idle_scheduled_loop_once():
    from importlib import import_module

    from django.apps import apps
    from django_q.models import OrmQ, Schedule

    Schedule.objects.all().delete()
    assert qcluster.start_idle_loops() == []  # nothing scheduled: nothing started
    for migration in ("runs.migrations.0002_sync_schedule", "runs.migrations.0005_archive_schedule"):
        import_module(migration).install(apps, None)
    assert sorted(qcluster.start_idle_loops()) == ["runs.tasks.archive_loop", "runs.tasks.sync_loop"]
    assert qcluster.start_idle_loops() == []  # the next worker to spawn
    assert OrmQ.objects.count() == 2


# -- the real thing: PostgreSQL backends terminated, a real process signalled -----------------------


@pytest.fixture
def deploy_runs(org, make_provider, fake):
    def make(count: int, script=((0.0, S.SUCCEEDED),)):
        kind = "comfydeploy"
        provider = make_provider(org, kind=kind, base_url=fake.base_url(kind), secret=fake.secret(kind))
        credential = provider.credentials.first()
        for i in range(count):
            fake.add_run(kind, f"run-{i:04d}", script=script)
        return [
            Run.objects.create(organization=org, provider=provider, credential=credential, external_id=f"run-{i:04d}")
            for i in range(count)
        ]

    return make


def terminate_own_backend(killer) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    with killer.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_the_sync_loop_goes_on_after_its_backend_is_terminated_mid_sweep(deploy_runs, monkeypatch):
    runs = deploy_runs(30)
    monkeypatch.setattr(loops, "FIRST_BACKOFF", 0.1)
    killer = connections.create_connection("default")
    terminated: list[str] = []

    def terminate_at_the_first_apply(execute, sql, params, many, context):
        if not terminated and sql.lstrip().upper().startswith("UPDATE") and "unnest" in sql.lower():
            terminated.append(sql)
            terminate_own_backend(killer)
        return execute(sql, params, many, context)

    stop = threading.Event()

    def one_pass(left, should_stop):
        stats = sync_due_runs(archive=False, should_stop=should_stop)
        if Run.objects.filter(status=Status.SUCCEEDED).count() == len(runs):
            stop.set()
        return stats.claimed, bool(stats.claimed)

    try:
        with connection.execute_wrapper(terminate_at_the_first_apply):
            loops.run_loop(one_pass, idle_sleep=0.05, seconds=60, stop=stop)
    finally:
        killer.close()
    assert terminated, "the backend was never terminated"
    assert stop.is_set(), "the loop did not finish the runs after losing its connection"
    assert Run.objects.filter(status=Status.SUCCEEDED).count() == len(runs)
    # The failed sweep released its leases instead of leaving them to expire.
    assert not Run.objects.filter(sync_locked_until__isnull=False).exists()


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_sigterm_stops_a_real_sync_runs_mid_sweep_with_exit_0_and_no_leases_left(deploy_runs, fake, tmp_path):
    runs = deploy_runs(400, script=((0.0, S.RUNNING),))
    fake.set_faults(latency_ms=400)  # a sweep takes several seconds
    settings = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "comfytrack.test_settings",
        "DATABASE_URL": f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}",
        "COMFYTRACK_DATA_DIR": str(tmp_path),
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "sync_runs", "--interval", "0.5"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not Run.objects.filter(sync_locked_until__isnull=False).exists():
            assert time.monotonic() < deadline, "the sweep never started"
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert time.monotonic() - stopped < 10
    assert "Stopped" in out and "Traceback" not in err
    assert not Run.objects.filter(sync_locked_until__gt=timezone.now() - timedelta(seconds=1)).exists()
    # The batch in hand was finished: every run it leased was written, none is left half-done.
    assert Run.objects.filter(last_synced__isnull=False).count() == len(runs)
