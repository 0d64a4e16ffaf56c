"""Several sweepers share the same runs: two `sync_runs` and two `send_webhooks` processes, on PostgreSQL.

Every status change is applied once: no duplicate RunEvent, no duplicate output or archived file, no
webhook sent twice; and both sweepers did part of the work (bench/scale_out.py measures throughput).
"""

from __future__ import annotations

import re

import pytest
from django.db import connection

from accounts.models import Organization
from comfytrack.tests.invariants import assert_every_change_applied_once
from comfytrack.tests.processes import WebhookReceiver, child_env, start, stop, wait_for
from providers.fake import state as S
from runs.models import Run, RunOutput, Status
from webhooks.models import WebhookDelivery, WebhookEndpoint

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="sweeper processes need a shared database with SKIP LOCKED (CI: PostgreSQL)",
)
N_RUNS = 150
OUTPUTS = 2
# Phases far enough apart that the runs are polled several times, at jittered moments, by either sweeper.
SCRIPT = ((0.0, S.QUEUED), (4.0, S.RUNNING), (9.0, S.SUCCEEDED))


def subscribe(org: Organization, url: str) -> None:
    endpoint = WebhookEndpoint(organization=org, url=url)
    endpoint.rotate_secret()
    endpoint.save()


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_sweepers_apply_every_status_change_once(org, make_provider, fake, tmp_path, settings):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    kind = "comfydeploy"
    provider = make_provider(org, kind=kind, base_url=fake.base_url(kind), secret=fake.secret(kind))
    fake.set_faults(latency_ms=10)
    with WebhookReceiver() as receiver:
        subscribe(org, receiver.url)
        runs = []
        for i in range(N_RUNS):
            fake.add_run(kind, f"so-{i}", script=SCRIPT, n_outputs=OUTPUTS)
            runs.append(
                Run(organization=org, provider=provider, credential=provider.credentials.first(), external_id=f"so-{i}")
            )
        Run.objects.bulk_create(runs)
        env = child_env(MEDIA_ROOT=settings.MEDIA_ROOT, COMFYTRACK_WEBHOOK_ALLOW_PRIVATE_HOSTS=receiver.host)
        logs = [tmp_path / f"{name}.log" for name in ("sweeper-1", "sweeper-2", "sender-1", "sender-2")]
        processes = [
            start(["manage.py", "sync_runs", "--interval", "0.2"], env, logs[0]),
            start(["manage.py", "sync_runs", "--interval", "0.2"], env, logs[1]),
            start(["manage.py", "send_webhooks"], env, logs[2]),
            start(["manage.py", "send_webhooks"], env, logs[3]),
        ]
        try:
            wait_for(
                lambda: (
                    not Run.objects.exclude(status=Status.SUCCEEDED).exists()
                    and not RunOutput.objects.filter(archived=None).exists()
                    and RunOutput.objects.count() == N_RUNS * OUTPUTS
                    and not WebhookDelivery.objects.filter(delivered=None).exists()
                ),
                timeout=120,
                what="both sweepers to finish every run, archive every output and send every webhook",
            )
        finally:
            for process in processes:
                stop(process)
        received = list(receiver.received)
    texts = [log.read_text(errors="replace") for log in logs]
    assert not any("Traceback" in text for text in texts), texts
    synced = [sum(int(n) for n in re.findall(r"Synced (\d+) run", text)) for text in texts[:2]]
    assert all(synced), f"each sweeper should have synced some runs, got {synced}"
    assert_every_change_applied_once(runs, OUTPUTS, received)
