"""Real-browser test of the compare page: from a run to its workflow's comparison, naming it on the way."""

from __future__ import annotations

from decimal import Decimal

import pytest
from playwright import sync_api as playwright_api

from comfytrack.testing.browser import assert_accessible, assert_no_sideways_scroll, shot
from insights.costing import price_runs
from insights.models import Price
from insights.tests.workflows import FP, timed_run
from runs.models import Run, Status

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_comparing_a_workflow_across_providers(page, org, provider, make_provider, make_run):
    cloud = make_provider(org, name="Comfy Cloud", kind="comfycloud", secret={"api_key": "k"})
    for day in range(1, 8):
        timed_run(make_run, provider, queue=3 + day, run=40 + 3 * day, days_ago=day)
        timed_run(make_run, cloud, queue=20 + day, run=25 + (day % 3) * 4, days_ago=day)
    timed_run(make_run, cloud, queue=5, run=5, status=Status.FAILED, error={"message": "CUDA out of memory"})
    # Prices an admin set: the runs are costed (estimated from their run times) and compared.
    Price.objects.create(provider=provider, per_gpu_second=Decimal("0.000700"))
    Price.objects.create(provider=cloud, per_gpu_second=Decimal("0.000900"))
    price_runs(Run.objects.all())
    run = Run.objects.filter(provider=provider).first()
    assert run is not None
    page.goto(f"/runs/{run.code}/")
    page.click("a:has-text('Compare this workflow across providers')")
    page.wait_for_url(f"**/compare/?workflow={FP}")
    playwright_api.expect(page.locator("tr.provider-row")).to_have_count(2)
    playwright_api.expect(page.locator("svg.line-chart polyline")).to_have_count(2)
    page.fill("input[name=label]", "Product shots SDXL")
    page.click("button:has-text('Save name')")
    playwright_api.expect(page.locator("h1")).to_contain_text("Product shots SDXL")
    playwright_api.expect(page.locator("section:has-text('Top errors')")).to_contain_text("CUDA out of memory")
    playwright_api.expect(page.locator("tr.provider-row").first).to_contain_text("$")
    assert_accessible(page)
    shot(page, "compare", full_page=True)
    page.click("a.chip:has-text('7 days')")
    page.wait_for_url("**days=7**")
    page.goto("/compare/")
    playwright_api.expect(page.locator("table.runs")).to_contain_text("Product shots SDXL")


def test_compare_and_stats_fit_a_phone_with_many_providers(phone, org, provider, make_provider, make_run):
    """Ten columns per provider on compare, a column per provider in the stats' cost table: on a phone the
    tables scroll inside their card, the page does not scroll sideways."""
    providers = [provider] + [
        make_provider(org, name=f"Provider number {n}", kind="comfycloud", secret={"api_key": "k"}) for n in range(4)
    ]
    for p in providers:
        timed_run(make_run, p, queue=12, run=95, days_ago=0)
        timed_run(make_run, p, queue=8, run=4, status=Status.FAILED, error={"message": "CUDA out of memory"})
        Price.objects.create(provider=p, per_gpu_second=Decimal("0.000700"))
    price_runs(Run.objects.all())
    for path in (f"/compare/?workflow={FP}", "/stats/"):
        phone.goto(path)
        phone.wait_for_load_state("networkidle")
        assert_no_sideways_scroll(phone)
        assert_accessible(phone)
    playwright_api.expect(phone.locator(".table-scroll table.cost-table tbody tr")).not_to_have_count(0)
