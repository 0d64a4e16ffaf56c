"""Real-browser tests of the alert pages: add a channel and a rule, send a test message, mute the rule;
edit a channel (its webhook URL kept secret) and a rule."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright import sync_api as playwright_api

from alerts.messages import compose_due
from alerts.models import Channel, Rule
from alerts.recording import open_incident
from comfytrack.testing.browser import assert_accessible, assert_no_sideways_scroll, shot
from providers.clients.base import RunError, RunSnapshot, RunStatus
from runs.applying import apply_snapshot
from runs.models import EventSource, Run, Status

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_setting_up_an_alert(page, provider, make_run, receiver):
    page.goto("/settings/alerts/")
    page.fill("#channel-name", "ops-slack")
    page.select_option("#channel-kind", "slack")
    page.fill("#channel-url", receiver.url("/services/T1/B1/abcd"))
    page.click("button:has-text('Add channel')")
    playwright_api.expect(page.locator("#channels")).to_contain_text("ops-slack")
    page.fill("#rule-name", "Deploy failures")
    page.select_option("#rule-kind", "run_failed")
    page.check("input[name=providers]")
    page.check("input[name=channels]")
    page.click("button:has-text('Create rule')")
    playwright_api.expect(page.locator("h1")).to_contain_text("Deploy failures")
    page.click("button:has-text('Send a test message')")
    playwright_api.expect(page.locator(".msg-success")).to_contain_text("ops-slack: test message sent.")
    assert receiver.posts and receiver.posts[0][0] == "/services/T1/B1/abcd"
    rule = Rule.objects.get()
    # A run that fails as the sync records it: the run-change hook opens the provider's incident.
    make_run(provider, "ext-42", status=Status.RUNNING)
    apply_snapshot(
        Run.objects.get(external_id="ext-42"),
        RunSnapshot("ext-42", RunStatus.FAILED, "failed", error=RunError(message="CUDA out of memory")),
        EventSource.POLL,
    )
    assert rule.incidents.get().title == f"Deploy failures: {provider.name}: a run failed"
    page.reload()
    playwright_api.expect(page.locator("h1")).to_contain_text("firing")
    # What the test message said, as sent.
    page.click("summary:has-text('Test: Deploy failures')")
    playwright_api.expect(page.locator(".message-text")).to_contain_text("If you can read this, the channel works.")
    assert_accessible(page)
    shot(page, "alert-rule", full_page=True)
    page.select_option("select[name=minutes]", "60")
    page.click("button:has-text('Mute')")
    playwright_api.expect(page.locator("h1 .badge.s-cancelled")).to_contain_text("muted until")
    page.goto("/settings/alerts/")
    playwright_api.expect(page.locator("#rules")).to_contain_text("muted")
    assert_accessible(page)
    shot(page, "alerts", full_page=True)


def _expected_400(page) -> None:
    """A refused form answers 400, which the console reports; that one line is expected."""
    assert [e for e in page.console_errors if "status of 400" in e], page.console_errors
    page.console_errors[:] = [e for e in page.console_errors if "status of 400" not in e]


def _slack_and_rule(org, provider, url: str) -> tuple[Channel, Rule]:
    channel = Channel(organization=org, name="ops-slack", kind="slack")
    channel.secret = {"url": url}
    channel.save()
    mail = Channel.objects.create(organization=org, name="on-call mail", kind="email", emails="oncall@example.test")
    rule = Rule.objects.create(organization=org, name="Deploy success rate", kind="success_rate", threshold=80)
    rule.providers.set([provider])
    rule.channels.set([channel, mail])
    return channel, rule


def test_editing_a_channel_keeps_its_url_secret(page, org, provider, receiver):
    url = receiver.url("/services/T1/B1/verysecret")
    channel, _ = _slack_and_rule(org, provider, url)
    page.goto("/settings/alerts/")
    page.click("a[aria-label='Edit ops-slack']")
    playwright_api.expect(page.locator("h1")).to_contain_text("Edit channel")
    playwright_api.expect(page.locator("#channel-url-help")).to_contain_text("…cret")
    assert page.input_value("#channel-url") == "" and "verysecret" not in page.content()
    assert_accessible(page)
    page.fill("#channel-name", "ops-slack-renamed")
    shot(page, "alert-channel-edit", full_page=True)
    page.click("button:has-text('Save channel')")
    playwright_api.expect(page.locator(".msg-success")).to_contain_text("Channel 'ops-slack-renamed' saved.")
    playwright_api.expect(page.locator("#channels")).to_contain_text("ops-slack-renamed")
    channel.refresh_from_db()
    assert channel.url == url  # left blank: kept
    # A bad URL is refused on the page, the typed name kept, the stored URL untouched.
    page.click("a[aria-label='Edit ops-slack-renamed']")
    page.fill("#channel-url", "http://hooks.example.test/not-https")
    page.click("button:has-text('Save channel')")
    playwright_api.expect(page.locator(".msg-error")).to_contain_text("https://")
    assert_accessible(page)
    _expected_400(page)
    channel.refresh_from_db()
    assert channel.url == url


def test_editing_a_rule(page, org, provider, receiver):
    _, rule = _slack_and_rule(org, provider, receiver.url("/services/T1/B1/abcd"))
    page.goto(f"/settings/alerts/rules/{rule.code}/")
    page.click("a:has-text('Edit rule')")
    playwright_api.expect(page.locator("h1")).to_contain_text("Edit rule")
    assert page.input_value("#rule-threshold") == "80" and page.is_checked("input[name=providers]")
    assert page.locator("#rule-minutes").count() == 0  # only the fields of a success-rate rule
    assert_accessible(page)
    page.fill("#rule-name", "Deploy success rate (strict)")
    page.fill("#rule-threshold", "95")
    page.fill("#rule-window", "50")
    page.uncheck("label:has-text('on-call mail') input")
    shot(page, "alert-rule-edit", full_page=True)
    page.click("button:has-text('Save rule')")
    playwright_api.expect(page.locator("h1")).to_contain_text("Deploy success rate (strict)")
    playwright_api.expect(page.locator(".pagehead")).to_contain_text("success rate below 95% over the last 50 runs")
    rule.refresh_from_db()
    assert [c.name for c in rule.channels.all()] == ["ops-slack"]
    # Unticking every channel is refused; what was typed stays.
    page.click("a:has-text('Edit rule')")
    page.uncheck("label:has-text('ops-slack') input")
    page.fill("#rule-threshold", "90")
    page.click("button:has-text('Save rule')")
    playwright_api.expect(page.locator(".msg-error")).to_contain_text("Choose at least one channel.")
    assert page.input_value("#rule-threshold") == "90"
    _expected_400(page)
    rule.refresh_from_db()
    assert rule.threshold == 95.0


def test_the_alert_pages_fit_a_phone(phone, org, provider, make_provider, receiver):
    """The rules and channels tables (five columns, a muted badge, several providers and channels) and the
    rule's incidents and messages scroll inside their cards on a phone; the pages never scroll sideways."""
    channel, rule = _slack_and_rule(org, provider, receiver.url("/services/T1/B1/abcd"))
    rule.providers.add(*[make_provider(org, name=f"Provider number {n}") for n in range(3)])
    open_incident(
        rule, f"provider:{provider.pk}", "Deploy success rate: Deploy below 80%", "Deploy: 10% of the last 20"
    )
    assert compose_due() == 2  # a message per channel, listed on the rule's page
    rule.muted_until = timezone.now() + timedelta(hours=1)
    rule.save()
    for path in (
        "/settings/alerts/",
        f"/settings/alerts/rules/{rule.code}/",
        f"/settings/alerts/channels/{channel.code}/edit/",
        f"/settings/alerts/rules/{rule.code}/edit/",
    ):
        phone.goto(path)
        assert_no_sideways_scroll(phone)
        assert_accessible(phone)
