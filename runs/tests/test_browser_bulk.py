"""Real-browser tests of the pages that work on many runs: tracking a list of ids, exports, the zip."""

from __future__ import annotations

import zipfile

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone
from playwright import sync_api as playwright_api

from comfytrack.testing.browser import assert_accessible, shot
from providers.fake.png import png_bytes
from runs.models import Run, RunOutput

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_tracking_a_pasted_list(page, provider):
    Run.objects.create(organization=provider.organization, provider=provider, external_id="known")
    page.goto("/runs/")
    page.click("a:has-text('Track runs by id')")
    page.wait_for_url("**/runs/track/")
    page.fill("#ids", "known\nfresh-1, fresh-2\n" + "x" * 201)
    page.click("button:has-text('Track runs')")
    results = page.locator("#track-results")
    playwright_api.expect(results).to_contain_text("2 newly tracked · 1 already tracked · 1 refused")
    assert_accessible(page)
    shot(page, "track-runs", full_page=True)
    results.locator("a:has-text('fresh-1')").click()
    playwright_api.expect(page.locator("h1")).to_contain_text("fresh-1")
    assert Run.objects.filter(external_id__startswith="fresh-").count() == 2


def test_exporting_the_filtered_list_and_zipping_a_gallery_selection(page, provider, tmp_path):
    run = Run.objects.create(organization=provider.organization, provider=provider, external_id="z-1", status="failed")
    for i in range(3):
        output = RunOutput(run=run, key=f"k{i}", kind="image", filename=f"ComfyUI_{i:05d}_.png", width=64, height=64)
        image = png_bytes(f"zip-{i}", 64, 64)
        output.file.save(output.filename, ContentFile(image), save=False)
        # As the archive leaves a PNG: its bytes verified, so the gallery shows it.
        output.archived, output.content_type, output.content_verified = timezone.now(), "image/png", True
        output.save()
    page.goto("/runs/?status=failed")
    with page.expect_download() as download:
        page.click("a:has-text('CSV')")
    rows = download.value.path().read_text().splitlines()
    assert rows[0].startswith("id,provider,") and len(rows) == 2 and "z-1" in rows[1]

    page.goto("/gallery/")
    boxes = page.locator("input[name=output]")
    boxes.nth(0).check()
    boxes.nth(2).check()
    assert_accessible(page)
    shot(page, "gallery-selection")
    with page.expect_download() as download:
        page.click("button:has-text('Download selected (zip)')")
    archive = zipfile.ZipFile(download.value.path())
    assert len(archive.namelist()) == 3 and archive.namelist()[-1] == "manifest.json"
    assert all(name.startswith("z-1/") for name in archive.namelist()[:2])
