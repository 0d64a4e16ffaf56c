"""Real-browser tests of the pages that work on many runs: tracking a pasted list of ids."""

from __future__ import annotations

import pytest
from playwright import sync_api as playwright_api

from runs.models import Run
from runs.tests.test_browser import SHOTS, browser, page  # noqa: F401 - the shared browser fixtures

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_tracking_a_pasted_list(page, provider):  # noqa: F811
    Run.objects.create(organization=provider.organization, provider=provider, external_id="known")
    page.goto("/runs/")
    page.click("a:has-text('Track runs by id')")
    page.wait_for_url("**/runs/track/")
    page.fill("#ids", "known\nfresh-1, fresh-2\n" + "x" * 201)
    page.click("button:has-text('Track runs')")
    results = page.locator("#track-results")
    playwright_api.expect(results).to_contain_text("2 newly tracked · 1 already tracked · 1 refused")
    page.screenshot(path=str(SHOTS / "track-runs.png"), full_page=True)
    results.locator("a:has-text('fresh-1')").click()
    playwright_api.expect(page.locator("h1")).to_contain_text("fresh-1")
    assert Run.objects.filter(external_id__startswith="fresh-").count() == 2
