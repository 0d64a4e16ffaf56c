"""A real q cluster with the schedules the migrations install: it starts its loops without waiting for
django-q2's first scheduler pass (30 s after start), and stops them cleanly on SIGINT to its group."""

from __future__ import annotations

import os
import signal
import time
import uuid
from datetime import timedelta
from importlib import import_module

import pytest
from django.apps import apps
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule

from comfytrack.tests.processes import child_env, start, wait_for
from providers.fake import state as S
from runs.models import LoopTurn, Run, Status

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the cluster's processes need a shared database (PostgreSQL in CI)"
)
SCHEDULES = (
    "runs.migrations.0002_sync_schedule",
    "runs.migrations.0005_archive_schedule",
    "webhooks.migrations.0002_delivery_schedule",
)


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_starting_cluster_sweeps_at_once_and_stops_cleanly(org, make_provider, fake, tmp_path):
    for migration in SCHEDULES:  # transactional tests flush the rows the migrations made
        import_module(migration).install(apps, None)
    # Not due for an hour: only the cluster's own start can run the loops before that.
    Schedule.objects.update(next_run=timezone.now() + timedelta(hours=1))
    kind = "comfyui"
    provider = make_provider(org, name="Local", kind=kind, base_url=fake.base_url(kind), secret=fake.secret(kind))
    fake.add_run(kind, "q-1", script=((0.0, S.SUCCEEDED),), n_outputs=1)
    run = Run.objects.create(
        organization=org, provider=provider, credential=provider.credentials.first(), external_id="q-1"
    )
    env = child_env(COMFYTRACK_Q_NAME=f"ct-test-{uuid.uuid4().hex[:12]}", COMFYTRACK_Q_WORKERS="4")
    cluster = start(["manage.py", "qcluster"], env, tmp_path / "qcluster.log")
    started = time.monotonic()
    try:
        wait_for(
            lambda: Run.objects.get(pk=run.pk).status == Status.SUCCEEDED,
            timeout=25,  # django-q2's scheduler would first look at 30 s
            what="the starting cluster to sync the run",
        )
        synced_after = time.monotonic() - started
        assert set(LoopTurn.objects.values_list("name", flat=True)) == {"sync", "archive", "webhooks"}
    finally:
        stopping = time.monotonic()
        os.killpg(cluster.pid, signal.SIGINT)  # as scripts/serve.py and Ctrl-C do
        try:
            rc = cluster.wait(timeout=20)
        finally:
            if cluster.poll() is None:
                os.killpg(cluster.pid, signal.SIGKILL)
                cluster.wait(10)
    log = (tmp_path / "qcluster.log").read_text(errors="replace")
    assert rc == 0, log[-3000:]
    assert time.monotonic() - stopping < 15, "the loops did not stop on SIGINT"
    assert "Traceback" not in log, log[-3000:]
    print(f"synced {synced_after:.1f} s after the cluster started")
