"""The production set end to end, on loopback: gunicorn, two q clusters on Redis, PostgreSQL, an S3
bucket (moto's server), the fake provider, a webhook receiver.

Runs are submitted and tracked through the API; they finish, archive to the bucket and are served
through the dashboard; /readyz is green and /metrics counts them. Then the q cluster that holds the
sweep is killed with SIGKILL while it holds leases, and the other one finishes the work with nothing
lost or duplicated.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import uuid

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from accounts.models import ApiKey
from comfytrack.tests import web_client
from comfytrack.tests.invariants import assert_every_change_applied_once
from comfytrack.tests.processes import (
    WebhookReceiver,
    child_env,
    delete_redis_keys,
    free_port,
    start,
    start_gunicorn,
    stop,
    wait_for,
)
from conftest import s3_environment, s3_resource
from providers.fake import state as S
from runs.models import LoopTurn, Run, RunOutput, Status
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the production set runs on PostgreSQL (CI: DATABASE_URL)"
    ),
    pytest.mark.django_db(transaction=True),
]
KIND = "comfyui"
METRICS_TOKEN = "production-test-metrics-token"
HTTPS = {"X-Forwarded-Proto": "https"}  # as the TLS proxy sends it
WORKFLOW = {"9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "e2e"}}}


def install_schedules() -> None:
    """The loops' schedules (transactional tests flush the rows the migrations made)."""
    from importlib import import_module

    from django.apps import apps

    for migration in (
        "runs.migrations.0002_sync_schedule",
        "runs.migrations.0005_archive_schedule",
        "webhooks.migrations.0002_delivery_schedule",
    ):
        import_module(migration).install(apps, None)


@pytest.fixture
def bucket(s3_endpoint):
    bucket = s3_resource(s3_endpoint).Bucket(f"ct-e2e-{uuid.uuid4().hex[:16]}")
    bucket.create()
    yield bucket
    bucket.objects.all().delete()
    bucket.delete()


def metric(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def sweeping_cluster(clusters: list[subprocess.Popen]) -> tuple[int, subprocess.Popen]:
    """The q cluster whose worker holds the sync loop's turn, once that worker holds leased runs."""

    def holder():
        leased = Run.objects.filter(sync_locked_until__gt=timezone.now()).exists()
        turn = LoopTurn.objects.filter(name="sync").values_list("holder", flat=True).first()
        if not (leased and turn):
            return None
        pid = int(turn.split(":")[1])
        for cluster in clusters:
            try:
                if os.getpgid(pid) == cluster.pid:
                    return pid, cluster
            except ProcessLookupError:
                return None
        return None

    return wait_for(holder, timeout=60, what="a q cluster worker holding leased runs", interval=0.02)


def test_the_production_set_end_to_end(
    org, alice, make_provider, fake, redis_url, s3_endpoint, bucket, tmp_path, client, settings
):
    make_provider(org, name="Studio", kind=KIND, base_url=fake.base_url(KIND), secret=fake.secret(KIND))
    fake.set_faults(latency_ms=5)
    install_schedules()
    _, api_key = ApiKey.issue(org, "e2e")
    q_name = f"ct-e2e-{uuid.uuid4().hex[:10]}"
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    with WebhookReceiver() as receiver:
        endpoint = WebhookEndpoint(organization=org, url=receiver.url)
        endpoint.rotate_secret()
        endpoint.save()
        env = child_env(
            COMFYTRACK_REDIS_URL=redis_url,
            COMFYTRACK_Q_NAME=q_name,
            COMFYTRACK_Q_WORKERS="4",
            **s3_environment(s3_endpoint, bucket.name, "e2e"),
            COMFYTRACK_WEBHOOK_ALLOW_PRIVATE_HOSTS=receiver.host,
            COMFYTRACK_METRICS_TOKEN=METRICS_TOKEN,
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
            ALLOWED_HOSTS="127.0.0.1",
            WEB_CONCURRENCY="2",
            COMFYTRACK_WEB_THREADS="4",
        )
        port = free_port()
        processes = []
        try:
            web = start_gunicorn(env, tmp_path / "gunicorn.log", port)
            processes.append(web)
            clusters = [start(["manage.py", "qcluster"], env, tmp_path / f"qcluster-{i}.log") for i in (1, 2)]
            processes += clusters
            base = f"http://127.0.0.1:{port}"
            api = web_client.Client(f"{base}/api/v1", {**HTTPS, "Authorization": f"Bearer {api_key}"})

            # -- 1. submitted and tracked through the API; finished, archived to the bucket --------------
            submitted = [api.post("/runs", json={"provider": "Studio", "workflow": WORKFLOW}) for _ in range(3)]
            assert [r.status_code for r in submitted] == [201] * 3, [r.text for r in submitted]
            tracked_ids = [
                fake.add_run(KIND, script=((0.0, S.RUNNING), (1.0, S.SUCCEEDED))).external_id for _ in range(20)
            ]
            tracked = api.post("/runs/track", json={"provider": "Studio", "external_ids": tracked_ids})
            assert tracked.status_code == 200, tracked.text
            codes = [r.json()["id"] for r in submitted] + [item["id"] for item in tracked.json()["items"]]

            def all_archived() -> bool:
                runs = [api.get(f"/runs/{code}").json() for code in codes]
                return (
                    all(run["status"] == "succeeded" for run in runs)
                    and not RunOutput.objects.filter(archived=None).exists()
                )

            wait_for(all_archived, timeout=90, what="the first runs to finish and be archived", interval=0.5)
            outputs = list(RunOutput.objects.all())
            assert len(outputs) == len(codes)
            keys = {obj.key for obj in bucket.objects.all()}
            assert keys == {f"e2e/{o.file.name}" for o in outputs} | {f"e2e/{o.thumbnail.name}" for o in outputs}

            # -- 2. served through the dashboard (gunicorn) from the bucket -------------------------------
            client.force_login(alice)
            session = (
                f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}"
            )
            browser = web_client.Client(base, {**HTTPS, "Cookie": session})
            gallery = browser.get("/gallery/")
            assert gallery.status_code == 200 and all(f"/outputs/{o.code}/thumbnail/" in gallery.text for o in outputs)
            output = outputs[0]
            download = browser.get(f"/outputs/{output.code}/file/?download=1")
            assert download.status_code == 200 and hashlib.sha256(download.content).hexdigest() == output.sha256
            assert download.headers["Content-Length"] == str(output.size_bytes)
            assert browser.get(f"/outputs/{output.code}/thumbnail/").content[8:12] == b"WEBP"

            # -- 3. ready, and counted ---------------------------------------------------------------------
            ready = web_client.get(f"{base}/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"database": "ok", "broker": "ok", "storage": "ok"}
            scrape = web_client.get(
                f"{base}/metrics", headers={**HTTPS, "Authorization": f"Bearer {METRICS_TOKEN}"}
            ).text
            assert metric(scrape, 'comfytrack_provider_answers_total{outcome="ok",provider_kind="comfyui"}') >= len(
                codes
            )
            assert metric(scrape, "comfytrack_runs_in_flight") == 0
            assert metric(scrape, "comfytrack_archive_backlog ") == 0
            assert metric(scrape, 'comfytrack_api_requests_total{status="201"}') == 3

            # -- 4. SIGKILL the sweeping cluster mid-sweep; the other finishes the work ---------------------
            more = [
                fake.add_run(KIND, script=((0.0, S.QUEUED), (2.0, S.RUNNING), (6.0, S.SUCCEEDED))).external_id
                for _ in range(200)
            ]
            assert api.post("/runs/track", json={"provider": "Studio", "external_ids": more}).status_code == 200
            _, victim = sweeping_cluster(clusters)
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait(timeout=10)
            survivor = next(c for c in clusters if c is not victim)
            wait_for(
                lambda: (
                    not Run.objects.exclude(status=Status.SUCCEEDED).exists()
                    and not RunOutput.objects.filter(archived=None).exists()
                    and not WebhookDelivery.objects.filter(delivered=None).exists()
                ),
                # The dead worker's leases lapse within 20 s; the survivor's scheduler starts the next sync
                # loop within django-q2's one-minute schedule. The rest is headroom for a loaded CI machine.
                timeout=180,
                what="the surviving cluster to finish every run, archive and deliver everything",
                interval=0.5,
            )
            assert survivor.poll() is None
        finally:
            for process in processes:
                stop(process)
            delete_redis_keys(redis_url, q_name)
        received = list(receiver.received)
    assert_every_change_applied_once(list(Run.objects.all()), 1, received)
    assert RunOutput.objects.count() == len(codes) + len(more)
    assert len({obj.key for obj in bucket.objects.all()}) == 2 * RunOutput.objects.count()
