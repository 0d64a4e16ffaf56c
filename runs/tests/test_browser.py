"""Real-browser tests: Playwright driving Debian's Chromium against pytest-django's live server.

Playwright cannot download its own browsers here, so we launch Debian's Chromium (`make test`
installs it through scripts/ensure-chromium.sh; COMFYTRACK_CHROMIUM points elsewhere). A missing
browser fails these tests rather than skipping them. Each test collects console errors: any CSP
violation ("Refused to …") fails the test. Every
page is saved to docs/screenshots/ for the README.
"""

from __future__ import annotations

import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.servers.basehttp import ThreadedWSGIServer
from django.test.testcases import LiveServerThread
from django.utils import timezone
from playwright import sync_api as playwright_api

from providers.fake.png import png_bytes
from providers.fake.state import FAILED, QUEUED, RUNNING, SUCCEEDED
from runs.actions import sync_run_now
from runs.models import Origin, RunOutput, Status
from runs.submission import submit_run

CHROMIUM = os.environ.get("COMFYTRACK_CHROMIUM", "/usr/bin/chromium")
# The README's screenshots are refreshed with COMFYTRACK_SCREENSHOTS=docs/screenshots; otherwise they go
# to a temporary folder, so an ordinary test run leaves the work tree untouched.
SHOTS = Path(os.environ.get("COMFYTRACK_SCREENSHOTS") or tempfile.mkdtemp(prefix="comfytrack-shots-")).resolve()
pytestmark = [pytest.mark.django_db(transaction=True)]
# The live server runs in a thread; Playwright's sync API runs an event loop in this one.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


class _OneAppCallAtATime(ThreadedWSGIServer):
    """Threaded (Chromium keeps connections alive) but runs one Django request at a time."""

    lock = threading.Lock()

    def set_app(self, application):
        def serial(environ, start_response):
            with self.lock:
                return application(environ, start_response)

        super().set_app(serial)


if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The in-memory SQLite test database is one connection shared by the live server's threads:
    # parallel requests (a gallery's thumbnails) would use it concurrently. Serve one at a time.
    LiveServerThread.server_class = _OneAppCallAtATime

WORKFLOW = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 1234, "steps": 25, "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl_base_1.0.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk"}},
}


# Module scope: Playwright's sync API keeps an event loop running in this thread until it exits, and the
# rest of the suite calls asyncio.run().
@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server, settings, alice):
    settings.COMFYTRACK_POLL_SECONDS = 1
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(8000)
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    page.goto("/login/")
    page.screenshot(path=str(SHOTS / "login.png"))
    page.fill("#id_username", "alice")
    page.fill("#id_password", "password")
    page.click("button[type=submit]")
    page.wait_for_url("**/runs/")
    yield page
    assert page.console_errors == [], page.console_errors
    context.close()


@pytest.fixture
def local(org, make_provider, fake):
    return make_provider(org, name="Local ComfyUI", kind="comfyui", base_url=fake.base_url("comfyui"), secret={})


def _off_loop(func, *args):
    """Provider clients run their own event loop; Playwright's sync API holds one in this thread."""
    from django.db import connection

    def call():
        try:
            return func(*args)
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


def _submit(provider, fake, script):
    fake.state.default_script = script
    return _off_loop(lambda: sync_run_now(submit_run(provider, WORKFLOW, origin=Origin.API)))


def test_runs_update_live_filter_and_cancel(page, local, fake):
    running = _submit(local, fake, ((0.0, RUNNING),))
    failed = _submit(local, fake, ((0.0, FAILED),))
    queued = _submit(local, fake, ((0.0, QUEUED),))
    assert (running.status, failed.status, queued.status) == (Status.RUNNING, Status.FAILED, Status.QUEUED)

    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if "/runs/rows/" in request.url else None)
    page.goto("/runs/")
    row = page.locator(f"#run-{running.code}")
    playwright_api.expect(row.locator(".badge")).to_have_text("Running")
    page.screenshot(path=str(SHOTS / "runs.png"))
    # The provider finishes the run; the sweep (here: sync now) applies it; htmx polling shows it.
    fake.state.get("comfyui", running.external_id).force(SUCCEEDED)
    _off_loop(sync_run_now, running)
    playwright_api.expect(row.locator(".badge")).to_have_text("Succeeded")
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload
    # One request per poll refreshed the whole table (the queued run keeps it polling).
    assert polls and all(str(running.code) in url and str(queued.code) in url for url in polls)
    playwright_api.expect(page.locator("#run-rows")).to_have_attribute("hx-trigger", "every 1s")

    page.click("a.chip:has-text('Failed')")
    page.wait_for_url("**status=problems")
    playwright_api.expect(page.locator(f"#run-{failed.code}")).to_be_visible()
    playwright_api.expect(page.locator(f"#run-{running.code}")).to_have_count(0)

    page.goto(f"/runs/{failed.code}/")
    page.click("details summary")
    page.screenshot(path=str(SHOTS / "run-detail-failed.png"), full_page=True)

    page.goto(f"/runs/{queued.code}/")
    page.click("button:has-text('Cancel run')")
    playwright_api.expect(page.locator("#run-live .badge")).to_have_text("Cancelled")
    page.screenshot(path=str(SHOTS / "run-detail.png"), full_page=True)


def test_gallery_lightbox(page, local, make_run):
    run = make_run(local, "gallery-run", status=Status.SUCCEEDED, workflow=WORKFLOW)
    for i in range(6):
        out = RunOutput(run=run, key=f"k{i}", kind="image", filename=f"ComfyUI_{i:05d}_.png", width=256, height=256)
        image = png_bytes(f"seed-{i}", 256, 256)
        out.file.save(out.filename, ContentFile(image), save=False)
        out.thumbnail.save(out.filename, ContentFile(image), save=False)
        out.archived = timezone.now()
        out.save()
    page.goto("/gallery/")
    page.screenshot(path=str(SHOTS / "gallery.png"))
    page.locator(".tile-link").first.click()
    dialog = page.locator("dialog.lightbox")
    playwright_api.expect(dialog).to_be_visible()
    playwright_api.expect(dialog).to_contain_text("a lighthouse at dusk")
    playwright_api.expect(dialog.locator("a:has-text('Download')")).to_be_visible()
    page.screenshot(path=str(SHOTS / "gallery-lightbox.png"))
    page.keyboard.press("Escape")
    playwright_api.expect(dialog).to_have_count(0)


def test_other_pages(page, local, fake, make_run):
    now = timezone.now()
    for i, status in enumerate([Status.SUCCEEDED] * 6 + [Status.FAILED] * 2 + [Status.TIMED_OUT]):
        created = now - timezone.timedelta(days=i % 5, minutes=5)
        error = {"message": "CUDA out of memory"} if status != Status.SUCCEEDED else {}
        started = created + timezone.timedelta(seconds=10 + i)
        make_run(
            local,
            status=status,
            created=created,
            started=started,
            finished=started + timezone.timedelta(seconds=30 + 7 * i),
            error=error,
        )
    for path, name in [
        ("/runs/new/", "submit"),
        ("/providers/", "providers"),
        ("/stats/", "stats"),
        ("/settings/api-keys/", "api-keys"),
    ]:
        page.goto(path)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    page.goto("/providers/")
    page.click("button:has-text('Test connection')")
    playwright_api.expect(page.locator(".msg-success")).to_contain_text("Local ComfyUI")
    page.goto("/settings/api-keys/")
    page.fill("input[name=name]", "render-farm")
    page.click("button:has-text('Create key')")
    playwright_api.expect(page.locator("#new-key")).to_contain_text("ct_")


def test_status_colours_agree_on_badges_bars_and_swatches(page, local, make_run):
    """One colour per status (static/comfytrack.css sets it once as --status): check what Chromium paints."""
    expected = {"succeeded": "rgb(47, 158, 68)", "failed": "rgb(224, 49, 49)", "timed_out": "rgb(240, 140, 0)"}
    for status in expected:
        make_run(local, status=status)
    style = "(e, prop) => getComputedStyle(e)[prop]"
    page.goto("/runs/")
    badges = {s: page.locator(f"table.runs .badge.s-{s}").first.evaluate(style, "backgroundColor") for s in expected}
    page.goto("/stats/")
    bars = {s: page.locator(f"svg.chart rect.s-{s}").first.evaluate(style, "fill") for s in expected}
    swatches = {s: page.locator(f".swatch.s-{s}").evaluate(style, "backgroundColor") for s in expected}
    assert badges == bars == swatches == expected
    assert page.locator(".swatch.s-queued").evaluate(style, "backgroundColor") == "rgb(116, 192, 252)"
