"""/healthz, /readyz, /metrics and request ids in logs (comfytrack.health, comfytrack.metrics, comfytrack.logs)."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from comfytrack import metrics

TOKEN = "metrics-test-token-0123456789"


def test_healthz_answers_any_host_over_plain_http(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    response = client.get("/healthz", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_readyz_is_green_when_database_broker_and_storage_answer(client, settings, redis_url, tmp_path):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "redis": redis_url}
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"}}
    settings.MEDIA_ROOT = tmp_path / "media"
    response = client.get("/readyz", HTTP_HOST="10.1.2.3")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok", "storage": "ok"}}


@pytest.mark.django_db
def test_readyz_names_the_failing_part_without_its_address_or_secret(client, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "redis": "redis://:hunter2-redis-pass@127.0.0.1:1/0"}
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("failed (")
    text = response.content.decode()
    assert "hunter2" not in text and "127.0.0.1" not in text


@pytest.mark.django_db
def test_readyz_fails_storage_when_the_media_location_cannot_be_a_directory(client, settings, tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    settings.MEDIA_ROOT = tmp_path / "a-file" / "media"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "broker": "ok", "storage": "failed (NotADirectoryError)"}


def test_probes_refuse_other_methods(client):
    response = client.post("/healthz")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"


# -- /metrics -------------------------------------------------------------------------------------


def test_metrics_refuse_a_request_without_token_or_allowed_network(client, settings):
    settings.COMFYTRACK_METRICS_TOKEN = TOKEN
    settings.COMFYTRACK_METRICS_ALLOWED_NETWORKS = []
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    settings.COMFYTRACK_METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403


@pytest.mark.django_db
def test_metrics_answer_the_bearer_token_or_an_allowed_network(client, settings):
    settings.COMFYTRACK_METRICS_TOKEN = TOKEN
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", HTTP_HOST="10.1.2.3")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    settings.COMFYTRACK_METRICS_TOKEN = ""
    settings.COMFYTRACK_METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="10.20.30.40").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.1").status_code == 403


def scrape(client, settings) -> dict[str, float]:
    """The scrape as {'name{labels}': value}."""
    settings.COMFYTRACK_METRICS_TOKEN = TOKEN
    text = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


@pytest.mark.django_db
def test_metrics_read_runs_breakers_graph_archive_and_webhook_backlogs_from_the_database(
    client, settings, org, provider, make_run
):
    from runs.models import RunOutput
    from webhooks.models import WebhookDelivery, WebhookEndpoint

    now = timezone.now()
    make_run(provider, status="running", next_sync_after=now - timedelta(seconds=90))
    make_run(provider, status="running", next_sync_after=now + timedelta(seconds=30))
    make_run(provider, status="queued")
    done = make_run(provider, status="succeeded", next_sync_after=None)
    make_run(provider, status="succeeded", next_sync_after=None, graph_due=now)
    make_run(provider, status="failed", next_sync_after=None, graph_due=now + timedelta(minutes=2), graph_attempts=1)
    credential = provider.credentials.get()
    credential.mark_failed("HTTP 503", retry_after=600, now=now)
    RunOutput.objects.create(run=done, key="a", filename="a.png", provider_url="https://x.example/a.png")
    RunOutput.objects.create(
        run=done, key="b", filename="b.png", provider_url="https://x.example/b.png", archive_attempts=2
    )
    RunOutput.objects.create(
        run=done,
        key="c",
        filename="c.png",
        provider_url="https://x.example/c.png",
        next_archive_after=None,
        archive_error="Gave up.",
    )
    endpoint = WebhookEndpoint(organization=org, url="https://hooks.example/x")
    endpoint.rotate_secret()
    endpoint.save()
    WebhookDelivery.objects.create(endpoint=endpoint, event_id="e1", event_type="run.succeeded", payload={})
    WebhookDelivery.objects.create(endpoint=endpoint, event_id="e2", event_type="run.succeeded", payload={}, attempt=3)
    WebhookDelivery.objects.create(
        endpoint=endpoint, event_id="e3", event_type="run.failed", payload={}, attempt=8, failed=now
    )

    samples = scrape(client, settings)
    assert samples['comfytrack_runs_in_flight{provider_kind="comfydeploy",status="running"}'] == 2
    assert samples['comfytrack_runs_in_flight{provider_kind="comfydeploy",status="queued"}'] == 1
    assert 85 <= samples["comfytrack_sweep_lag_seconds"] < 150
    label = f'{{credential="{credential.pk}",provider_kind="comfydeploy"}}'
    assert samples[f"comfytrack_credential_breaker_open{label}"] == 1
    assert samples[f"comfytrack_credential_consecutive_failures{label}"] == 1
    assert samples["comfytrack_graph_backlog"] == 2
    assert samples["comfytrack_graph_retrying"] == 1
    assert samples["comfytrack_archive_backlog"] == 2
    assert samples["comfytrack_archive_retrying"] == 1
    assert samples["comfytrack_archive_failed"] == 1
    assert samples["comfytrack_webhook_backlog"] == 2
    assert samples["comfytrack_webhook_retrying"] == 1
    assert samples["comfytrack_webhook_failed"] == 1


@pytest.mark.django_db(transaction=True)
def test_metrics_count_the_sweeps_provider_answers_and_errors(client, settings, org, make_provider, fake):
    from providers.fake import state as S
    from runs.models import Run
    from runs.sync import sync_due_runs

    kind = "comfydeploy"
    provider = make_provider(org, kind=kind, base_url=fake.base_url(kind), secret=fake.secret(kind))
    for i in range(3):
        fake.add_run(kind, f"m-{i}", script=((0.0, S.RUNNING),))
        Run.objects.create(
            organization=org, provider=provider, credential=provider.credentials.first(), external_id=f"m-{i}"
        )
    before = scrape(client, settings)
    ok = f'comfytrack_provider_answers_total{{outcome="ok",provider_kind="{kind}"}}'
    sweeps = "comfytrack_sweep_duration_seconds_count"
    sync_due_runs()
    Run.objects.update(next_sync_after=timezone.now())
    fake.set_faults(mode="5xx")
    sync_due_runs()
    after = scrape(client, settings)
    assert after[ok] - before.get(ok, 0) == 3
    error = f'comfytrack_provider_errors_total{{cause="server_error",provider_kind="{kind}"}}'
    assert after[error] - before.get(error, 0) == 3
    assert after[sweeps] - before.get(sweeps, 0) == 2


@pytest.mark.django_db
def test_metrics_count_api_responses_by_status(client, settings):
    key = 'comfytrack_api_requests_total{status="401"}'
    before = scrape(client, settings).get(key, 0)
    client.get("/api/v1/runs")
    assert scrape(client, settings)[key] - before == 1


@pytest.mark.parametrize(
    ("kwargs", "cause"),
    [
        ({"auth_failed": True, "status_code": 401}, "auth"),
        ({"status_code": 429, "retry_after": 5}, "rate_limited"),
        ({"status_code": 503}, "server_error"),
        ({"status_code": 400, "permanent": True}, "client_error"),
        ({"status_code": 200}, "bad_answer"),
        ({}, "network"),
        ({"permanent": True}, "unsupported"),
    ],
)
def test_provider_errors_fall_into_a_few_causes(kwargs, cause):
    from providers.clients.base import ProviderError

    assert metrics.error_cause(ProviderError("x", **kwargs)) == cause


# -- request ids in logs ------------------------------------------------------------------------------


def test_every_response_carries_a_request_id_and_a_callers_safe_id_is_kept(client):
    first, second = client.get("/healthz"), client.get("/healthz")
    assert len(first["X-Request-ID"]) == 32 and first["X-Request-ID"] != second["X-Request-ID"]
    assert client.get("/healthz", HTTP_X_REQUEST_ID="lb-1234.abc")["X-Request-ID"] == "lb-1234.abc"
    hostile = client.get("/healthz", HTTP_X_REQUEST_ID="x\r\nSet-Cookie: a=b <script>")["X-Request-ID"]
    assert len(hostile) == 32 and "<" not in hostile


@pytest.mark.django_db
def test_json_log_lines_name_the_request(client, settings, tmp_path):
    from logging.config import dictConfig

    from django.conf import settings as live

    config = json.loads(json.dumps(live.LOGGING))
    config["handlers"]["console"]["formatter"] = "json"
    config["handlers"]["console"]["class"] = "logging.FileHandler"
    config["handlers"]["console"]["filename"] = str(tmp_path / "log.jsonl")
    config["root"]["level"] = "WARNING"
    dictConfig(config)
    try:
        settings.Q_CLUSTER = {**settings.Q_CLUSTER, "redis": "redis://127.0.0.1:1/0"}
        response = client.get("/readyz", HTTP_X_REQUEST_ID="req-42")
    finally:
        for handler in logging.getLogger().handlers:
            handler.close()
        dictConfig(live.LOGGING)
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert response.status_code == 503
    check = next(line for line in lines if line["logger"] == "comfytrack.health")
    assert check["request_id"] == "req-42"
    assert check["level"] == "WARNING" and "time" in check and "broker" in check["message"]
