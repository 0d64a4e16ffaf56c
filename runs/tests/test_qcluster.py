"""The django-q2 cluster end to end, on each broker: the ORM (the default) and Redis.

A real `manage.py qcluster` process, tasks sent through the broker by a second process, runs on the
fake provider over loopback: the cluster syncs them to the end and archives their outputs. PostgreSQL
only: the cluster's processes must see the test's committed rows (SQLite's test database is in memory).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import Counter

import pytest
from django.db import connection
from django_q.models import OrmQ, Schedule, Success

from comfytrack.tests.processes import ROOT, child_env, delete_redis_keys, redis_keys, start, stop, wait_for
from providers.fake import state as S
from runs.models import Run, RunEvent, RunOutput, Status

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the cluster's processes need a shared database (PostgreSQL in CI)"
)
N_RUNS = 6
SCRIPT = ((0.0, S.QUEUED), (0.3, S.RUNNING), (1.0, S.SUCCEEDED))
ENQUEUE = (
    "from django_q.tasks import async_task; "
    "async_task('runs.tasks.sync_loop', 10.0, 0.2); async_task('runs.tasks.archive_loop', 10.0, 0.2)"
)


@pytest.fixture(params=["orm", "redis"])
def broker_env(request):
    """Settings for the cluster and the enqueueing process; a cluster name of its own per test, so on
    Redis its keys (`<name>`, `django_q:<name>:*`) are ours alone and deleted afterwards."""
    name = f"ct-test-{uuid.uuid4().hex[:12]}"
    overrides = {"COMFYTRACK_Q_NAME": name, "COMFYTRACK_Q_WORKERS": "2"}
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        overrides["COMFYTRACK_REDIS_URL"] = url
        yield request.param, name, overrides
        delete_redis_keys(url, name)
    else:
        yield request.param, name, overrides


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_cluster_syncs_runs_to_the_end_and_archives_their_outputs(broker_env, org, make_provider, fake, tmp_path):
    broker, name, overrides = broker_env
    kind = "comfyui"
    provider = make_provider(
        org, name="Local ComfyUI", kind=kind, base_url=fake.base_url(kind), secret=fake.secret(kind)
    )
    for i in range(N_RUNS):
        fake.add_run(kind, f"q-{i}", script=SCRIPT, n_outputs=1)
        Run.objects.create(
            organization=org, provider=provider, credential=provider.credentials.first(), external_id=f"q-{i}"
        )
    # Only the loops this test sends run (a starting cluster would also start the scheduled ones).
    Schedule.objects.all().delete()
    # Only the tasks this test sends: a fresh database still has the migrations' schedules, whose loops a
    # starting cluster would queue too.
    Schedule.objects.all().delete()
    env = child_env(**overrides)
    cluster = start(["manage.py", "qcluster"], env, tmp_path / "qcluster.log")
    try:
        enqueue = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", ENQUEUE], cwd=ROOT, env=env, capture_output=True, timeout=60
        )
        assert enqueue.returncode == 0, enqueue.stderr.decode()
        wait_for(
            lambda: (
                not Run.objects.exclude(status=Status.SUCCEEDED).exists()
                and RunOutput.objects.filter(archived__isnull=False).count() == N_RUNS
            ),
            timeout=60,
            what="the cluster to finish and archive every run",
        )
        # Both loops end on time and the cluster records them as succeeded tasks.
        wait_for(lambda: Success.objects.count() == 2, timeout=30, what="both loops to end")
        if broker == "redis":
            # The cluster's own status went through Redis (the ORM broker keeps none there).
            assert any(
                key.startswith(f"django_q:{name}:cluster".encode())
                for key in redis_keys(overrides["COMFYTRACK_REDIS_URL"], name)
            )
    finally:
        stop(cluster)
    log = (tmp_path / "qcluster.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]
    # Both loops ran as cluster tasks and finished without error; on Redis nothing used the ORM queue.
    assert set(Success.objects.values_list("func", flat=True)) == {"runs.tasks.sync_loop", "runs.tasks.archive_loop"}
    if broker == "redis":
        assert not OrmQ.objects.exists()
    # Each status change once per run: queued -> running -> succeeded at most, never repeated.
    transitions = Counter(RunEvent.objects.values_list("run_id", "to_status"))
    assert max(transitions.values()) == 1
    assert Counter(to for _, to in transitions)[Status.SUCCEEDED] == N_RUNS
    for output in RunOutput.objects.all():
        with output.file.open("rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
