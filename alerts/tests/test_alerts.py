"""Alert rules from run changes to messages on real receivers (SMTP and HTTP on loopback)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from alerts.messages import compose_due
from alerts.models import Channel, Event, Incident, Message, Rule
from alerts.recording import check_credentials
from alerts.sending import deliver_due, send_test
from alerts.tasks import alerts_pass
from providers.clients.base import RunError, RunSnapshot, RunStatus
from runs.applying import apply_snapshot
from runs.models import EventSource, Status
from webhooks.models import WebhookDelivery, WebhookEndpoint


def finish(run, status: str, message: str | None = None):
    """The provider says the run ended: through runs.applying, so the run-change hook sees it."""
    snapshot = RunSnapshot(
        external_id=run.external_id,
        status=RunStatus(status),
        provider_status=status,
        error=RunError(message=message) if message else None,
    )
    assert apply_snapshot(run, snapshot, EventSource.POLL)
    return run


def chat_channel(org, name: str, kind: str, url: str) -> Channel:
    channel = Channel(organization=org, name=name, kind=kind)
    channel.secret = {"url": url}
    channel.save()
    return channel


@pytest.fixture
def slack(org, receiver):
    return chat_channel(org, "ops-slack", Channel.Kind.SLACK, receiver.url("/services/T000/B000/XXXX"))


@pytest.fixture
def discord(org, receiver):
    return chat_channel(org, "ops-discord", Channel.Kind.DISCORD, receiver.url("/api/webhooks/1/abc"))


@pytest.fixture
def mail(org, smtp):
    return Channel.objects.create(organization=org, name="oncall", kind=Channel.Kind.EMAIL, emails="a@x.test, b@x.test")


def rule_for(org, kind, *channels, **fields) -> Rule:
    rule = Rule.objects.create(organization=org, name=f"{kind} rule", kind=kind, **fields)
    rule.channels.set(channels)
    return rule


def test_a_failed_run_fires_once_then_recovers(org, provider, make_run, slack, discord, mail, receiver, smtp):
    rule = rule_for(org, Rule.Kind.RUN_FAILED, slack, discord, mail)
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        finish(make_run(provider, "r1", status=Status.RUNNING), "failed", "CUDA out of memory")
        assert alerts_pass() == (0, 3, 3)
    (slack_path, slack_body), (discord_path, discord_body) = sorted(receiver.posts, key=lambda p: p[0], reverse=True)
    assert (
        slack_path == "/services/T000/B000/XXXX"
        and "CUDA out of memory" in slack_body["attachments"][0]["blocks"][0]["text"]["text"]
    )
    assert discord_body["embeds"][0]["title"] == f"[comfytrack] Alert: {rule.name}"
    assert discord_body["allowed_mentions"] == {"parse": []} and discord_path == "/api/webhooks/1/abc"
    (email,) = smtp.messages
    assert email["to"] == ["a@x.test", "b@x.test"] and "CUDA out of memory" in email["data"]
    assert Incident.objects.get().closed is None

    # More failures within 5 minutes: no message yet; after 5 minutes one digest with both.
    with time_machine.travel(now + timedelta(minutes=1), tick=False):
        finish(make_run(provider, "r2", status=Status.RUNNING), "failed", "timeout in node 3")
        finish(make_run(provider, "r3", status=Status.RUNNING), "succeeded")
        assert alerts_pass() == (0, 0, 0)
    with time_machine.travel(now + timedelta(minutes=6), tick=False):
        assert alerts_pass() == (0, 3, 3)
    digest = receiver.posts[-1][1] if "embeds" in receiver.posts[-1][1] else receiver.posts[-2][1]
    assert "2 events (recovered)" in digest["embeds"][0]["title"]
    assert (
        "timeout in node 3" in digest["embeds"][0]["description"]
        and "Runs succeed again" in digest["embeds"][0]["description"]
    )
    assert Incident.objects.get().closed is not None and len(smtp.messages) == 2


def test_messages_link_to_the_runs_they_name(org, provider, make_run, slack, mail, receiver, smtp, settings):
    """One event: the message's link is its run. A digest: each line ends with its run's link, the message
    links the rule's page. Only absolute links (COMFYTRACK_PUBLIC_URL): a relative one is no use in a chat."""
    settings.COMFYTRACK_PUBLIC_URL = "https://ct.example"
    rule = rule_for(org, Rule.Kind.RUN_FAILED, slack, mail)
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        first = finish(make_run(provider, "r1", status=Status.RUNNING), "failed", "CUDA out of memory")
        alerts_pass()
    single = receiver.posts[-1][1]["attachments"][0]["blocks"][0]["text"]["text"]
    assert f"<https://ct.example/runs/{first.code}/|Open in comfytrack>" in single
    with time_machine.travel(now + timedelta(minutes=1), tick=False):
        runs = [finish(make_run(provider, f"r{n}", status=Status.RUNNING), "failed", "boom") for n in (2, 3)]
    with time_machine.travel(now + timedelta(minutes=6), tick=False):
        alerts_pass()
    digest = receiver.posts[-1][1]["attachments"][0]["blocks"][0]["text"]["text"]
    for run in runs:
        assert f"Run {run.external_id} on {provider.name} failed: boom — https://ct.example/runs/{run.code}/" in digest
    assert f"<https://ct.example/settings/alerts/rules/{rule.code}/|Open in comfytrack>" in digest
    assert f"https://ct.example/runs/{runs[1].code}/" in smtp.messages[-1]["data"]

    settings.COMFYTRACK_PUBLIC_URL = ""
    with time_machine.travel(now + timedelta(minutes=7), tick=False):
        finish(make_run(provider, "r4", status=Status.RUNNING), "failed", "boom")
        finish(make_run(provider, "r5", status=Status.RUNNING), "failed", "boom")
    with time_machine.travel(now + timedelta(minutes=12), tick=False):
        alerts_pass()
    digest = receiver.posts[-1][1]["attachments"][0]["blocks"][0]["text"]["text"]
    assert "Run r5 on" in digest and "/runs/" not in digest


def test_failure_rules_keep_an_incident_per_provider(org, provider, make_provider, make_run, slack):
    """One provider's successes do not 'recover' another's failures: each provider has its own incident."""
    healthy = make_provider(org, name="Healthy")
    rule = rule_for(org, Rule.Kind.RUN_FAILED, slack)
    finish(make_run(provider, status=Status.RUNNING), "failed", "CUDA out of memory")
    finish(make_run(healthy, status=Status.RUNNING), "succeeded")
    finish(make_run(provider, status=Status.RUNNING), "failed", "CUDA out of memory")
    broken = Incident.objects.get(rule=rule)
    assert broken.closed is None and broken.key == f"provider:{provider.pk}" and provider.name in broken.title
    assert list(Event.objects.order_by("id").values_list("kind", flat=True)) == ["fired", "update"]
    finish(make_run(healthy, status=Status.RUNNING), "failed", "disk full")
    assert Incident.objects.filter(rule=rule, closed=None).count() == 2
    finish(make_run(provider, status=Status.RUNNING), "succeeded")
    assert set(Incident.objects.filter(rule=rule, closed=None).values_list("key", flat=True)) == {
        f"provider:{healthy.pk}"
    }
    # An incident kept the earlier way, one for the whole rule, closes on any success in scope.
    legacy = Incident.objects.create(rule=rule, key="", title="old", opened=timezone.now())
    finish(make_run(provider, status=Status.RUNNING), "succeeded")
    assert Incident.objects.get(pk=legacy.pk).closed is not None


def test_rules_scope_by_provider_and_workflow(org, provider, make_provider, make_run, slack):
    other = make_provider(org, name="Other")
    rule = rule_for(org, Rule.Kind.RUN_TIMED_OUT_OR_LOST, slack)
    rule.providers.set([other])
    finish(make_run(provider, status=Status.RUNNING), "timed_out")
    assert not Event.objects.exists()
    finish(make_run(other, status=Status.RUNNING), "lost")
    assert Event.objects.get().kind == "fired"
    wf_rule = rule_for(org, Rule.Kind.RUN_FAILED, slack, workflows=["0123456789abcdef"])
    finish(make_run(provider, status=Status.RUNNING), "failed")
    assert not Event.objects.filter(rule=wf_rule).exists()


def test_success_rate_below_threshold_fires_and_recovers(org, provider, make_run, slack, receiver):
    rule = rule_for(org, Rule.Kind.SUCCESS_RATE, slack, threshold=50, window=4)
    for status in ["succeeded", "failed", "failed"]:
        finish(make_run(provider, status=Status.RUNNING), status)
    assert not Incident.objects.exists()  # 3 runs: fewer than the window
    finish(make_run(provider, status=Status.RUNNING), "failed")  # 1 of 4 = 25%
    incident = Incident.objects.get(rule=rule)
    assert incident.key == f"provider:{provider.pk}" and "25% of the last 4" in Event.objects.get().text
    for _ in range(3):  # 0 of 4 each time: one update, then nothing new to say
        finish(make_run(provider, status=Status.RUNNING), "failed")
    for _ in range(3):  # 25% (an update), 50% (recovered), 75% (no incident)
        finish(make_run(provider, status=Status.RUNNING), "succeeded")
    assert Incident.objects.get(pk=incident.pk).closed is not None
    events = list(Event.objects.order_by("created", "id").values_list("kind", "text"))
    assert [(kind, text.split(" succeeded")[0]) for kind, text in events] == [
        ("fired", f"{provider.name}: 25% of the last 4 runs"),
        ("update", f"{provider.name}: 0% of the last 4 runs"),
        ("update", f"{provider.name}: 25% of the last 4 runs"),
        ("recovered", f"Recovered: {provider.name}: 50% of the last 4 runs"),
    ]


def test_a_credential_failing_for_n_minutes(org, provider, slack, receiver):
    rule = rule_for(org, Rule.Kind.CREDENTIAL_FAILING, slack, minutes=10)
    credential = provider.credentials.get()
    now = timezone.now()
    credential.failing_since, credential.last_error = now - timedelta(minutes=5), "401 Unauthorized: bad token"
    credential.save()
    assert check_credentials(now) == 0
    assert check_credentials(now + timedelta(minutes=6)) == 1
    assert check_credentials(now + timedelta(minutes=7)) == 0  # still the same incident: no new event
    assert "401 Unauthorized" in Event.objects.get(rule=rule).text
    credential.failing_since = None
    credential.save()
    assert check_credentials(now + timedelta(minutes=8)) == 1
    assert list(Event.objects.values_list("kind", flat=True)) == ["fired", "recovered"]


def test_muted_rules_record_but_do_not_send(org, provider, make_run, slack, receiver):
    rule = rule_for(org, Rule.Kind.RUN_FAILED, slack, muted_until=timezone.now() + timedelta(hours=1))
    finish(make_run(provider, status=Status.RUNNING), "failed")
    assert compose_due() == 0 and not Message.objects.exists()
    assert Event.objects.get(rule=rule).muted and receiver.posts == []


def test_failed_sends_retry_with_back_off_then_give_up(org, provider, make_run, slack, receiver):
    receiver.status = 500
    rule_for(org, Rule.Kind.RUN_FAILED, slack)
    finish(make_run(provider, status=Status.RUNNING), "failed")
    compose_due()
    assert deliver_due() == (0, 1)
    now = timezone.now()
    message = Message.objects.get()
    assert message.next_attempt_at is not None
    assert message.attempts == 1 and "answered 500" in message.last_error and message.next_attempt_at > now
    assert deliver_due() == (0, 0)  # not due yet
    for step in range(1, 5):
        deliver_due(now + timedelta(hours=2 * step))
    message.refresh_from_db()
    assert message.failed is not None and message.sent is None and message.attempts == 5


def test_a_failed_send_never_records_or_logs_the_channel_url_path(org, provider, make_run, slack, receiver, caplog):
    # A Slack or Discord incoming-webhook URL's path is its credential (the channel list shows it masked).
    receiver.status = 404
    rule_for(org, Rule.Kind.RUN_FAILED, slack)
    finish(make_run(provider, status=Status.RUNNING), "failed")
    compose_due()
    assert deliver_due() == (0, 1)
    error = Message.objects.get().last_error
    assert "answered 404" in error and "/services/" not in error
    assert "answered 404" in caplog.text and "/services/" not in caplog.text


def test_a_throttled_send_waits_at_least_as_long_as_the_service_asks(org, provider, make_run, slack, receiver):
    receiver.status, receiver.retry_after = 429, "900"
    rule_for(org, Rule.Kind.RUN_FAILED, slack)
    finish(make_run(provider, status=Status.RUNNING), "failed")
    compose_due()
    before = timezone.now()
    assert deliver_due() == (0, 1)
    message = Message.objects.get()
    assert message.next_attempt_at is not None
    assert message.attempts == 1 and message.next_attempt_at - before >= timedelta(seconds=900)  # not 1 min


def test_outbound_urls_are_ssrf_guarded(org, provider, make_run, settings):
    settings.COMFYTRACK_ALERT_ALLOW_PRIVATE_HOSTS = []
    channel = chat_channel(org, "sneaky", Channel.Kind.SLACK, "http://169.254.169.254/latest/meta-data/")
    rule = rule_for(org, Rule.Kind.RUN_FAILED, channel)
    ((_, error),) = send_test(rule)
    assert error and "169.254.169.254" in error and "Refused" in error


def test_signed_webhook_channels_queue_a_signed_delivery(org, provider, make_run):
    endpoint = WebhookEndpoint(organization=org, url="https://hooks.example.com/ct")
    endpoint.rotate_secret()
    endpoint.save()
    channel = Channel.objects.create(organization=org, name="hook", kind=Channel.Kind.WEBHOOK, endpoint=endpoint)
    rule = rule_for(org, Rule.Kind.RUN_FAILED, channel)
    assert send_test(rule) == [(channel, None)]
    delivery = WebhookDelivery.objects.get()
    assert delivery.event_type == "alert.test" and delivery.payload["type"] == "alert.test"
    assert delivery.payload["rule"]["name"] == rule.name
    # A real message (not a test) is alert.fired, or alert.recovered when it says the incident cleared.
    for recovered, event_type in ((False, "alert.fired"), (True, "alert.recovered")):
        message = Message.objects.create(channel=channel, rule=rule, subject="s", text="t", recovered=recovered)
        deliver_due(only=[message.pk])
        assert WebhookDelivery.objects.latest("id").payload["type"] == event_type


def test_send_test_reports_each_channel(org, slack, mail, receiver, smtp):
    rule = rule_for(org, Rule.Kind.RUN_FAILED, slack, mail)
    assert {c.name: e for c, e in send_test(rule)} == {"ops-slack": None, "oncall": None}
    assert "Test: " in receiver.posts[0][1]["text"] and "If you can read this" in smtp.messages[0]["data"]


def test_a_line_break_in_a_stored_rule_name_fails_the_email_not_the_sender(org, slack, mail, receiver, smtp):
    """Names are checked now (alerts.config), but one stored earlier must not crash sending: the email
    fails with a reason, the other channels still get theirs."""
    rule = rule_for(org, Rule.Kind.RUN_FAILED, slack, mail)
    Rule.objects.filter(pk=rule.pk).update(name="evil\nBcc: x@evil.test")
    rule.refresh_from_db()
    results = {c.name: e for c, e in send_test(rule)}
    oncall_error = results["oncall"]
    assert results["ops-slack"] is None and oncall_error is not None and "line break" in oncall_error
    assert smtp.messages == [] and len(receiver.posts) == 1
