"""Emission from applying a snapshot, Standard Webhooks signatures, delivery, backoff, redelivery, isolation."""

from __future__ import annotations

import base64
import hmac
import itertools
import json
import re
import socket
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from providers.clients.base import OutputKind, OutputRef, RunSnapshot, RunStatus
from runs.applying import apply_snapshot
from runs.models import EventSource, Status
from webhooks import signing
from webhooks.delivery import deliver_due_webhooks
from webhooks.models import MAX_ATTEMPTS, RETRY_BASE, RETRY_CAP, RETRY_FACTOR, WebhookDelivery, WebhookEndpoint

# -- an independent Standard Webhooks verifier, written from the spec, sharing no code with ours --------


class WebhookVerificationError(Exception):
    pass


def verify_standard_webhook(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> dict:
    """https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md"""
    msg_id, stamp, signatures = headers["webhook-id"], headers["webhook-timestamp"], headers["webhook-signature"]
    if abs(time.time() - int(stamp)) > tolerance:
        raise WebhookVerificationError("timestamp outside tolerance")
    key = base64.b64decode(secret[len("whsec_") :] if secret.startswith("whsec_") else secret)
    content = f"{msg_id}.{stamp}.{body.decode('utf-8')}".encode()
    expected = base64.b64encode(hmac.digest(key, content, "sha256"))
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return json.loads(body)
    raise WebhookVerificationError("no matching signature")


def test_it_matches_the_published_test_vector():
    # The example from the Standard Webhooks / Svix documentation.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    signature = signing.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_it_makes_spec_shaped_secrets():
    secret = signing.new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32


# -- emission ------------------------------------------------------------------------------------------


def snapshot(run, status: RunStatus, outputs=()) -> RunSnapshot:
    return RunSnapshot(external_id=run.external_id, status=status, provider_status=status.value, outputs=outputs)


PNG = OutputRef(key="n9/a.png", filename="a.png", kind=OutputKind.IMAGE, url="https://cdn.example.com/a.png")


def test_it_enqueues_status_and_output_events_with_the_change(org, other_org, provider, make_run, make_endpoint):
    make_endpoint(org, "https://hooks.example.com/all")
    make_endpoint(org, "https://hooks.example.com/done", events=["run.succeeded", "run.failed"])
    make_endpoint(other_org, "https://hooks.example.com/theirs")
    make_endpoint(org, "https://hooks.example.com/off", is_active=False)
    run = make_run(provider, status=Status.QUEUED)
    with transaction.atomic():
        apply_snapshot(run, snapshot(run, RunStatus.RUNNING), EventSource.POLL)
        # Written in the change's own transaction (an outbox), not after its commit.
        assert WebhookDelivery.objects.filter(event_type="run.started").count() == 1
    apply_snapshot(run, snapshot(run, RunStatus.SUCCEEDED, outputs=(PNG,)), EventSource.POLL)
    apply_snapshot(run, snapshot(run, RunStatus.SUCCEEDED, outputs=(PNG,)), EventSource.POLL)  # nothing new
    sent = sorted(WebhookDelivery.objects.values_list("endpoint__url", "event_type"))
    assert sent == [
        ("https://hooks.example.com/all", "run.output"),
        ("https://hooks.example.com/all", "run.started"),
        ("https://hooks.example.com/all", "run.succeeded"),
        ("https://hooks.example.com/done", "run.succeeded"),
    ]
    output = WebhookDelivery.objects.get(event_type="run.output").payload
    assert output["type"] == "run.output" and output["data"]["output"]["filename"] == "a.png"
    assert output["data"]["run"]["id"] == str(run.code)
    succeeded = WebhookDelivery.objects.filter(event_type="run.succeeded").first()
    assert succeeded is not None
    done = succeeded.payload
    assert done["data"]["run"]["status"] == "succeeded" and done["data"]["run"]["provider"]["name"] == "Deploy"
    ids = WebhookDelivery.objects.values_list("event_id", flat=True)
    assert len(set(ids)) == len(ids) and all(i.startswith("msg_") for i in ids)


def test_it_writes_times_exactly_as_the_api_does(client, org, provider, make_run, make_endpoint, key):
    make_endpoint(org, "https://hooks.example.com/all")
    created = timezone.now().replace(microsecond=123456)
    run = make_run(provider, status=Status.QUEUED, created=created, queued=created)
    apply_snapshot(run, snapshot(run, RunStatus.SUCCEEDED, outputs=(PNG,)), EventSource.POLL)
    payload = WebhookDelivery.objects.get(event_type="run.succeeded").payload
    api = client.get(f"/api/v1/runs/{run.code}", headers={"X-API-Key": key}).json()
    assert payload["data"]["run"] == api
    assert api["created"].endswith(".123Z")  # milliseconds and "Z", not microseconds
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", payload["timestamp"])


def test_it_costs_nothing_without_endpoints(provider, make_run):
    run = make_run(provider, status=Status.QUEUED)
    apply_snapshot(run, snapshot(run, RunStatus.FAILED), EventSource.POLL)
    assert not WebhookDelivery.objects.exists()


# -- delivery ------------------------------------------------------------------------------------------


def queue(endpoint, event_type="run.succeeded", **payload) -> WebhookDelivery:
    body = {"type": event_type, "timestamp": timezone.now().isoformat(), "data": payload or {"run": {"id": "x"}}}
    return WebhookDelivery.objects.create(
        endpoint=endpoint, event_id=f"msg_{event_type}", event_type=event_type, payload=body
    )


def test_it_delivers_signed_messages(org, receiver, make_endpoint):
    endpoint, secret = make_endpoint(org, receiver.url)
    delivery = queue(endpoint, n=1)
    stats = deliver_due_webhooks()
    assert (stats.claimed, stats.delivered) == (1, 1)
    [request] = receiver.requests
    payload = verify_standard_webhook(secret, request.headers, request.body)
    assert payload == delivery.payload and request.headers["webhook-id"] == "msg_run.succeeded"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("comfytrack/")
    with pytest.raises(WebhookVerificationError):
        verify_standard_webhook(signing.new_secret(), request.headers, request.body)
    with pytest.raises(WebhookVerificationError):
        verify_standard_webhook(secret, request.headers, request.body.replace(b"1", b"2"))
    delivery.refresh_from_db()
    assert delivery.delivered and delivery.state == "delivered" and delivery.attempt == 1
    assert delivery.status_code == 200 and delivery.response_excerpt == "thanks" and delivery.latency_ms is not None
    assert deliver_due_webhooks().claimed == 0  # never sent twice


def test_it_retries_with_exponential_backoff_for_a_day_then_gives_up(org, make_receiver, make_endpoint):
    receiver = make_receiver(status=503)
    endpoint, _ = make_endpoint(org, receiver.url)
    delivery = queue(endpoint)
    start = now = timezone.now()
    gaps = []
    while True:
        stats = deliver_due_webhooks(now=now)
        assert stats.claimed == 1
        delivery.refresh_from_db()
        if delivery.failed:
            break
        assert delivery.status_code == 503 and "503" in delivery.error and delivery.response_excerpt
        assert delivery.next_attempt_at is not None
        gaps.append((delivery.next_attempt_at - now).total_seconds())
        assert deliver_due_webhooks(now=now + timedelta(seconds=gaps[-1] - 1)).claimed == 0  # not before it is due
        now = delivery.next_attempt_at
    assert delivery.attempt == MAX_ATTEMPTS == len(receiver.requests)
    # Four times longer each time up to 10 h, each up to 10 % sooner than that.
    ceilings = [min(RETRY_BASE * RETRY_FACTOR**n, RETRY_CAP) for n in range(MAX_ATTEMPTS - 1)]
    assert all(0.9 * ceiling <= gap <= ceiling for gap, ceiling in zip(gaps, ceilings, strict=True)), gaps
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps[:6])) and gaps[2] >= 9 * gaps[0]
    assert now - start >= timedelta(hours=24)
    assert delivery.next_attempt_at is None and delivery.state == "failed"
    # Every retry carries the same webhook-id, so receivers can deduplicate.
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery.event_id}


@pytest.mark.parametrize("status", [429, 503])
def test_it_waits_at_least_as_long_as_the_endpoint_asks(org, make_receiver, make_endpoint, status):
    receiver = make_receiver(status=status, retry_after="600")
    endpoint, _ = make_endpoint(org, receiver.url)
    delivery = queue(endpoint)
    now = timezone.now()
    deliver_due_webhooks(now=now)
    delivery.refresh_from_db()
    assert delivery.next_attempt_at is not None
    assert delivery.attempt == 1 and delivery.next_attempt_at - now >= timedelta(seconds=600)  # not 30 s


def test_it_redelivers(org, make_receiver, make_endpoint):
    receiver = make_receiver(status=500)
    endpoint, secret = make_endpoint(org, receiver.url)
    failed = queue(endpoint)
    deliver_due_webhooks()
    receiver.status = 200
    again = WebhookDelivery.objects.get(pk=failed.pk).redeliver()
    deliver_due_webhooks()
    again.refresh_from_db()
    assert again.delivered and again.event_id == failed.event_id and again.pk != failed.pk
    assert verify_standard_webhook(secret, receiver.requests[-1].headers, receiver.requests[-1].body)


def test_it_does_not_let_a_hanging_endpoint_stall_others(org, make_receiver, make_endpoint, settings):
    settings.COMFYTRACK_WEBHOOK_TIMEOUT = 2
    hanging = make_receiver(hang=30)
    healthy = make_receiver()
    slow_endpoint, _ = make_endpoint(org, hanging.url)
    fast_endpoint, _ = make_endpoint(org, healthy.url)
    stuck = [queue(slow_endpoint, f"run.e{i}") for i in range(3)]
    quick = [queue(fast_endpoint, f"run.e{i}") for i in range(3)]
    started = time.monotonic()
    stats = deliver_due_webhooks()
    elapsed = time.monotonic() - started
    assert elapsed < 6  # one timeout, not one per delivery or per endpoint
    assert len(healthy.requests) == 3 and all(r.at - started < 1.5 for r in healthy.requests)
    assert (stats.delivered, stats.failed, stats.deferred) == (3, 1, 2)
    assert all(WebhookDelivery.objects.get(pk=d.pk).delivered for d in quick)
    first = WebhookDelivery.objects.get(pk=stuck[0].pk)
    assert first.attempt == 1 and first.next_attempt_at
    assert first.error.startswith("No answer from ") and "within 2 s" in first.error
    rest = WebhookDelivery.objects.filter(pk__in=[d.pk for d in stuck[1:]])
    assert all(d.attempt == 0 and d.locked_until is None for d in rest)  # untouched, due next pass


def test_it_refuses_private_targets_unless_allowed(org, receiver, make_endpoint, settings):
    settings.COMFYTRACK_WEBHOOK_ALLOW_PRIVATE_HOSTS = []
    endpoint, _ = make_endpoint(org, receiver.url)
    delivery = queue(endpoint)
    deliver_due_webhooks()
    delivery.refresh_from_db()
    assert not receiver.requests and not delivery.delivered
    assert "loopback" in delivery.error and delivery.attempt == 1
    # The refusal names the webhook setting, not the output archive's.
    assert delivery.error.startswith("Refused to send to 127.0.0.1:")
    assert "COMFYTRACK_WEBHOOK_ALLOW_PRIVATE_HOSTS" in delivery.error
    assert "ARCHIVE" not in delivery.error and "provider" not in delivery.error


def test_it_refuses_a_name_that_resolves_to_a_private_address(org, receiver, make_endpoint, settings):
    # Only 127.0.0.1 is allowed, by address: "localhost" is checked where it resolves, and refused.
    settings.COMFYTRACK_WEBHOOK_ALLOW_PRIVATE_HOSTS = ["127.0.0.1"]
    port = receiver.server.server_address[1]
    endpoint, _ = make_endpoint(org, f"http://localhost:{port}/hook")
    delivery = queue(endpoint)
    deliver_due_webhooks()
    delivery.refresh_from_db()
    assert not receiver.requests and not delivery.delivered
    assert delivery.error.startswith(f"Refused to send to localhost:{port}: it is a loopback address")


def test_it_answers_non_2xx_and_connection_errors_as_failures(org, make_endpoint, settings):
    settings.COMFYTRACK_WEBHOOK_ALLOW_PRIVATE_HOSTS = ["127.0.0.1"]
    settings.COMFYTRACK_WEBHOOK_TIMEOUT = 3
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint, _ = make_endpoint(org, f"http://127.0.0.1:{port}/nothing-listens-here")
    delivery = queue(endpoint)
    deliver_due_webhooks()
    delivery.refresh_from_db()
    assert delivery.attempt == 1 and "could not connect" in delivery.error and delivery.next_attempt_at
    assert delivery.error.startswith(f"Could not send to http://127.0.0.1:{port}/nothing-listens-here: ")


def test_it_does_not_follow_redirects(org, receiver, make_endpoint):
    # A 3xx is the endpoint's answer: following it would post the signed body somewhere the guard and
    # the organization never chose.
    receiver.status, receiver.location = 307, f"{receiver.url}?again"
    endpoint, _ = make_endpoint(org, receiver.url)
    delivery = queue(endpoint, n=1)
    deliver_due_webhooks()
    delivery.refresh_from_db()
    assert [r.path for r in receiver.requests] == ["/hook"]
    assert delivery.status_code == 307 and delivery.error == f"{receiver.url} answered 307." and not delivery.delivered


def test_it_skips_disabled_endpoints(org, receiver, make_endpoint):
    endpoint, _ = make_endpoint(org, receiver.url, is_active=False)
    queue(endpoint)
    assert deliver_due_webhooks().claimed == 0 and not receiver.requests


def test_the_command_sends_what_is_due(org, receiver, make_endpoint, capsys):
    endpoint, _ = make_endpoint(org, receiver.url)
    queue(endpoint)
    call_command("send_webhooks", "--once")
    assert capsys.readouterr().out.strip().splitlines()[-1] == "1 delivered, 0 failed, 0 deferred"
    assert len(receiver.requests) == 1


def test_the_signature_covers_the_exact_body(org):
    secret = signing.new_secret()
    body = b'{"a":1}'
    headers = signing.headers(secret, "msg_1", int(time.time()), body)
    assert verify_standard_webhook(secret, headers, body) == {"a": 1}
    with pytest.raises(WebhookVerificationError):
        verify_standard_webhook(secret, {**headers, "webhook-id": "msg_2"}, body)


def test_it_shrugs_off_an_endpoint_deleted_mid_send(org, receiver, make_endpoint, monkeypatch):
    from webhooks import delivery as module

    endpoint, _ = make_endpoint(org, receiver.url)
    queue(endpoint)
    real_claim_due = module.claim_due

    def claim_then_delete(*args, **kwargs):
        claimed = real_claim_due(*args, **kwargs)
        WebhookEndpoint.objects.filter(pk=endpoint.pk).delete()  # someone deletes it from the dashboard
        return claimed

    monkeypatch.setattr(module, "claim_due", claim_then_delete)
    stats = deliver_due_webhooks()
    assert stats.claimed == 1 and len(receiver.requests) == 1 and not WebhookDelivery.objects.exists()


def test_the_sync_sweep_announces_changes_in_bulk(org, make_provider, fake, make_endpoint):
    from providers.fake.state import SUCCEEDED
    from runs.sync import sync_due_runs
    from runs.tracking import track_run

    local = make_provider(org, name="Local", kind="comfyui", base_url=fake.base_url("comfyui"), secret={})
    make_endpoint(org, "https://hooks.example.com/all")
    for i in range(3):
        fake.add_run("comfyui", f"prompt-{i}", script=[(0, SUCCEEDED)])
        track_run(local, f"prompt-{i}")
    sync_due_runs(archive=False)
    succeeded = WebhookDelivery.objects.filter(event_type="run.succeeded")
    assert succeeded.count() == 3
    assert WebhookDelivery.objects.filter(event_type="run.output").count() >= 3
    assert {d.payload["data"]["run"]["status"] for d in succeeded} == {"succeeded"}
