"""Real-browser test of the alert pages: add a channel and a rule, send a test message, mute the rule."""

from __future__ import annotations

import pytest
from playwright import sync_api as playwright_api

from alerts.models import Rule
from alerts.recording import open_incident
from runs.models import Status
from runs.tests.test_browser import assert_accessible, browser, page, shot  # noqa: F401 - shared browser fixtures

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_setting_up_an_alert(page, provider, make_run, receiver):  # noqa: F811
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
    run = make_run(provider, "ext-42", status=Status.FAILED, error={"message": "CUDA out of memory"})
    open_incident(rule, "", "Deploy failures: a run failed", "Run ext-42 on Deploy failed: CUDA out of memory", run)
    page.reload()
    assert_accessible(page)
    shot(page, "alert-rule", full_page=True)
    page.select_option("select[name=minutes]", "60")
    page.click("button:has-text('Mute')")
    playwright_api.expect(page.locator("h1 .badge")).to_contain_text("muted until")
    page.goto("/settings/alerts/")
    playwright_api.expect(page.locator("#rules")).to_contain_text("muted")
    assert_accessible(page)
    shot(page, "alerts", full_page=True)
