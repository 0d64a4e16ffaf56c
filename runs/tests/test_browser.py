"""Real-browser tests of the runs pages and the settings pages, every page checked with axe-core at 1280
and 390 px. The browser, the signed-in `page`/`phone` and their checks are the shared pytest plugin
`comfytrack.testing.browser` (Playwright driving Debian's Chromium against pytest-django's live server).
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone
from playwright import sync_api as playwright_api

from comfytrack.testing.browser import DESKTOP, assert_accessible, assert_no_sideways_scroll, off_loop, shot
from providers.fake.png import png_bytes
from providers.fake.state import FAILED, QUEUED, RUNNING, SUCCEEDED
from runs.actions import sync_run_now
from runs.models import Origin, RunOutput, Status
from runs.submission import submit_run
from webhooks.models import WebhookDelivery, WebhookEndpoint

expect = playwright_api.expect
pytestmark = [pytest.mark.django_db(transaction=True)]

WORKFLOW = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 1234, "steps": 25, "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl_base_1.0.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk"}},
}


@pytest.fixture
def local(org, make_provider, fake):
    return make_provider(org, name="Local ComfyUI", kind="comfyui", base_url=fake.base_url("comfyui"), secret={})


def _submit(provider, fake, script):
    fake.state.default_script = script
    return off_loop(lambda: sync_run_now(submit_run(provider, WORKFLOW, origin=Origin.API)))


def _archived_output(run, i: int, size: int = 64) -> RunOutput:
    out = RunOutput(run=run, key=f"k{i}", kind="image", filename=f"ComfyUI_{i:05d}_.png", width=size, height=size)
    image = png_bytes(f"seed-{i}", size, size)
    out.file.save(out.filename, ContentFile(image), save=False)
    out.thumbnail.save(out.filename, ContentFile(image), save=False)
    # As the archive leaves a PNG: its bytes verified, so pages show it inline (runs.serving).
    out.archived, out.content_type, out.content_verified = timezone.now(), "image/png", True
    out.save()
    return out


@pytest.fixture
def everything(local, make_run, org, alice):
    """One of each page's subjects: runs of every kind of outcome, outputs, an API key, a webhook with deliveries."""
    now = timezone.now()
    failed = make_run(
        local,
        "failed-run-0001",
        status=Status.FAILED,
        provider_status="error",
        workflow=WORKFLOW,
        created=now - timedelta(minutes=3),
        started=now - timedelta(minutes=3),
        finished=now - timedelta(minutes=2),
        error={
            "message": "CUDA out of memory. Tried to allocate 2.00 GiB",
            "node_id": "3",
            "node_type": "KSampler",
            "exception_type": "torch.OutOfMemoryError",
            "traceback": 'Traceback (most recent call last):\n  File "execution.py", line 323\n',
        },
    )
    succeeded = make_run(
        local,
        "succeeded-run-0001",
        status=Status.SUCCEEDED,
        provider_status="success",
        workflow=WORKFLOW,
        created=now - timedelta(minutes=5),
        started=now - timedelta(minutes=5) + timedelta(seconds=4),
        finished=now - timedelta(minutes=4),
        n_outputs=2,
    )
    _archived_output(succeeded, 1)
    RunOutput.objects.create(run=succeeded, key="pending", kind="image", filename="ComfyUI_00002_.png")
    for i, status in enumerate([Status.SUCCEEDED] * 5 + [Status.TIMED_OUT, Status.RUNNING, Status.QUEUED]):
        created = now - timedelta(days=i % 4, minutes=10 + i)
        make_run(local, status=status, created=created, started=created + timedelta(seconds=8), progress=0.4)
    endpoint = WebhookEndpoint(organization=org, url="https://hooks.example.com/comfytrack", events=["run.failed"])
    endpoint.rotate_secret()
    endpoint.save()
    WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_id="msg_2Ab",
        event_type="run.failed",
        payload={},
        attempt=2,
        status_code=503,
        response_excerpt="Service Unavailable",
        next_attempt_at=now + timedelta(minutes=5),
    )
    return {"failed": failed, "succeeded": succeeded, "endpoint": endpoint}


# -- item: the live list ---------------------------------------------------------------------------------


def test_the_runs_list_is_live_new_runs_appear_and_polling_pauses_while_hidden(page, local, fake, make_run):
    running = _submit(local, fake, ((0.0, RUNNING),))
    failed = _submit(local, fake, ((0.0, FAILED),))
    queued = _submit(local, fake, ((0.0, QUEUED),))
    assert (running.status, failed.status, queued.status) == (Status.RUNNING, Status.FAILED, Status.QUEUED)

    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if "/runs/rows/" in request.url else None)
    page.goto("/runs/")
    row = page.locator(f"#run-{running.code}")
    expect(row.locator(".badge")).to_have_text("Running")
    created = row.locator("time")
    expect(created).to_have_text("just now")
    assert "20" in created.get_attribute("title")  # the absolute time, in the viewer's time zone

    # The provider finishes the run; the sweep (here: sync now) applies it; the poll shows it.
    fake.state.get("comfyui", running.external_id).force(SUCCEEDED)
    off_loop(sync_run_now, running)
    expect(row.locator(".badge")).to_have_text("Succeeded")
    # A run created while the page is open appears at the top, without a reload.
    new = make_run(local, "brand-new-run", status=Status.PENDING)
    expect(page.locator("#run-rows tr.run-row").first).to_have_id(f"run-{new.code}")
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload
    # Each poll is one request: it names the unfinished rows only, and where "new" starts.
    assert polls and all("since=" in url and str(failed.code) not in url for url in polls)
    assert any(str(queued.code) in url for url in polls)

    # Hidden: no polls at all; visible again: one at once.
    page.evaluate(
        """() => {
          Object.defineProperty(document, "hidden", {configurable: true, get: () => true});
          Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "hidden"});
          document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    time.sleep(0.3)  # a request already on its way may still land
    before = len(polls)
    page.wait_for_timeout(2500)
    assert len(polls) == before
    page.evaluate(
        """() => {
          Object.defineProperty(document, "hidden", {configurable: true, get: () => false});
          Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "visible"});
          document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    page.wait_for_timeout(300)
    assert len(polls) == before + 1

    page.click("a.chip:has-text('Failed')")
    page.wait_for_url("**status=problems")
    expect(page.locator(f"#run-{failed.code}")).to_be_visible()
    expect(page.locator(f"#run-{running.code}")).to_have_count(0)

    page.goto(f"/runs/{queued.code}/")
    page.click("button:has-text('Cancel run')")
    expect(page.locator("#run-live .badge")).to_have_text("Cancelled")


def test_later_pages_say_how_many_new_runs_arrived(page, local, make_run):
    now = timezone.now()
    for i in range(3):
        make_run(local, f"older-{i}", status=Status.SUCCEEDED, created=now - timedelta(minutes=10 + i))
    page.goto("/runs/?limit=2")
    page.click("a:has-text('Older runs')")
    expect(page.locator("tr.run-row")).to_have_count(1)
    notice = page.locator("#new-runs")
    expect(notice).to_be_hidden()
    make_run(local, "arrived-1")
    make_run(local, "arrived-2")
    expect(notice).to_contain_text("2 new runs since this page loaded")
    expect(page.locator("tr.run-row")).to_have_count(1)  # this page keeps what it shows
    notice.locator("a").click()
    expect(page.locator("tr.run-row").first).to_contain_text("arrived-2")


# -- item: gallery and lightbox ---------------------------------------------------------------------------


def test_gallery_captions_and_an_accessible_lightbox(page, local, make_run):
    run = make_run(local, "gallery-run", status=Status.SUCCEEDED, workflow=WORKFLOW)
    for i in range(6):
        _archived_output(run, i, size=64)
    RunOutput.objects.create(run=run, key="waiting", kind="image", filename="ComfyUI_99999_.png")
    page.goto("/gallery/")
    # An output not archived yet shows a placeholder that says so.
    expect(page.locator(".tile .placeholder").first).to_contain_text("Archiving…")
    tiles = page.locator(".tile-link")
    tiles.nth(1).focus()
    caption = page.locator(".tile").nth(1).locator(".tile-caption")
    expect(caption).to_contain_text("Local ComfyUI")
    expect(caption).to_contain_text("a lighthouse at dusk")
    expect(caption).to_have_css("opacity", "1")  # shown on focus, not only on hover
    shot(page, "gallery")

    tiles.nth(1).press("Enter")
    dialog = page.locator("dialog.lightbox")
    expect(dialog).to_be_visible()
    for text in ("a lighthouse at dusk", "1234", "sdxl_base_1.0.safetensors", "Local ComfyUI", "Succeeded"):
        expect(dialog).to_contain_text(text)
    expect(dialog.locator("a:has-text('Download')")).to_be_visible()
    # The 64×64 picture is scaled up to the space there is, keeping its aspect.
    image = dialog.locator(".lb-media img")
    expect(image).to_have_js_property("complete", True)
    # What is painted (object-fit: contain): the natural size times one scale for both sides.
    drawn = image.evaluate(
        """img => {
          const scale = Math.min(img.clientWidth / img.naturalWidth, img.clientHeight / img.naturalHeight);
          return [img.naturalWidth * scale, img.naturalHeight * scale, img.getBoundingClientRect().bottom];
        }"""
    )
    assert drawn[0] >= 400 and drawn[0] == drawn[1] and drawn[2] <= DESKTOP["height"], drawn
    assert_accessible(page)
    shot(page, "gallery-lightbox")
    # Focus is trapped: Tab and Shift+Tab go round the dialog's controls.
    for key in ["Tab"] * 5 + ["Shift+Tab"] * 7:
        page.keyboard.press(key)
        assert page.evaluate("!!document.activeElement.closest('dialog.lightbox')")
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    # Focus returns to the tile that opened it.
    assert page.evaluate("document.activeElement.classList.contains('tile-link')")


def test_the_gallery_empty_state_spans_the_grid(page):
    page.goto("/gallery/?q=nothing-matches")
    empty = page.locator(".gallery .empty")
    expect(empty).to_contain_text("match these filters")
    assert abs(empty.bounding_box()["width"] - page.locator(".gallery").bounding_box()["width"]) < 2


# -- items: phone width and accessibility, on every page -------------------------------------------------

PAGES = [
    ("/runs/", "runs"),
    ("failed", "run-detail-failed"),
    ("succeeded", "run-detail"),
    ("/gallery/", "gallery-page"),
    ("/providers/", "providers"),
    ("/stats/", "stats"),
    ("/runs/new/", "submit"),
    ("/runs/track/", "track"),
    ("output", "output-page"),
    ("/runs/00000000-0000-0000-0000-000000000000/", "not-found"),
    ("/settings/api-keys/", "api-keys"),
    ("/settings/webhooks/", "webhooks"),
    ("endpoint", "webhook-detail"),
    ("/compare/", "compare"),
    ("/settings/alerts/", "alerts"),
]


def _visit_every_page(page, everything, suffix: str) -> None:
    for path, name in PAGES:
        if path in ("failed", "succeeded"):
            path = f"/runs/{everything[path].code}/"
        elif path == "endpoint":
            path = f"/settings/webhooks/{everything['endpoint'].code}/"
        elif path == "output":  # an output's own page (the lightbox without JavaScript)
            path = f"/outputs/{everything['succeeded'].outputs.filter(archived__isnull=False).get().code}/"
        page.goto(path)
        page.wait_for_load_state("networkidle")
        if name == "not-found":  # the page itself answers 404, which the console reports
            page.console_errors[:] = [e for e in page.console_errors if "status of 404" not in e]
        if suffix == "-phone":
            assert_no_sideways_scroll(page)
        assert_accessible(page)
        if name not in ("gallery-page", "output-page", "not-found", "track", "compare", "alerts"):
            shot(page, f"{name}{suffix}", full_page=name.startswith("run-detail"))


def test_every_page_is_accessible_at_desktop_width(page, everything):
    _visit_every_page(page, everything, "")
    # Focus is visible: a keyboard user sees where they are.
    page.goto("/runs/")
    page.keyboard.press("Tab")  # the skip link
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), outline


def test_every_page_fits_a_phone_without_sideways_scrolling(phone, everything):
    _visit_every_page(phone, everything, "-phone")
    # The navigation folds behind a Menu button and opens on demand.
    phone.goto("/runs/")
    nav = phone.locator("nav.mainnav")
    expect(nav).to_be_hidden()
    menu = phone.locator("button.navtoggle")
    menu.click()
    expect(nav).to_be_visible()
    expect(menu).to_have_attribute("aria-expanded", "true")
    # The runs table is one card per run: nothing wider than the screen.
    assert phone.locator("tr.run-row").first.evaluate("e => getComputedStyle(e).display") == "flex"
    phone.context.clear_cookies()
    phone.goto("/login/")
    assert_no_sideways_scroll(phone)
    shot(phone, "login-phone")


def test_status_is_never_colour_alone(page, local, make_run):
    """Each status has its colour (written once as --status, so badges, bars and swatches agree), its word
    and its shape."""
    expected = {"succeeded": "rgb(42, 122, 59)", "failed": "rgb(201, 42, 42)", "timed_out": "rgb(168, 84, 0)"}
    for status in expected:
        make_run(local, status=status)
    style = "(e, prop) => getComputedStyle(e)[prop]"
    page.goto("/runs/")
    badges = {s: page.locator(f"table.runs .badge.s-{s}").first.evaluate(style, "backgroundColor") for s in expected}
    shapes = {
        s: page.locator(f"table.runs .badge.s-{s}").first.evaluate("e => getComputedStyle(e, '::before').content")
        for s in expected
    }
    words = {s: page.locator(f"table.runs .badge.s-{s}").first.inner_text() for s in expected}
    page.goto("/stats/")
    bars = {s: page.locator(f"svg.chart rect.s-{s}").first.evaluate(style, "fill") for s in expected}
    swatches = {s: page.locator(f".swatch.s-{s}").evaluate(style, "backgroundColor") for s in expected}
    assert badges == bars == swatches == expected
    assert words == {"succeeded": "Succeeded", "failed": "Failed", "timed_out": "Timed out"}
    assert len(set(shapes.values())) == 3 and "none" not in shapes.values()


def test_test_connection_and_a_new_api_key(page, local):
    page.goto("/providers/")
    page.click("button:has-text('Test connection')")
    expect(page.locator(".msg-success")).to_contain_text("Local ComfyUI")
    assert_accessible(page)  # with a message shown
    page.goto("/settings/api-keys/")
    page.fill("input[name=name]", "render-farm")
    page.click("button:has-text('Create key')")
    expect(page.locator("#new-key")).to_contain_text("ct_")
    assert_accessible(page)
    # Shown once: reloading neither re-posts the form nor shows the key again.
    page.reload()
    expect(page.locator("#new-key")).to_have_count(0)
    expect(page.locator("table")).to_contain_text("render-farm")


def test_a_webhook_endpoint_from_creation_to_test_delivery_and_deletion(page):
    page.goto("/settings/webhooks/")
    page.fill("input[name=url]", "http://localhost:9/hook")
    page.click("button:has-text('Add endpoint')")
    # A local target is refused with the setting that would allow it.
    expect(page.locator(".field-error")).to_contain_text("COMFYTRACK_WEBHOOK_ALLOW_PRIVATE_HOSTS")
    page.fill("input[name=url]", "https://hooks.example.com/comfytrack")
    page.check("input[value='run.failed']")
    page.click("button:has-text('Add endpoint')")
    # Redirected to the endpoint's page, which shows the signing secret once.
    expect(page.locator("#new-secret")).to_contain_text("whsec_")
    page.reload()
    expect(page.locator("#new-secret")).to_have_count(0)
    page.click("button:has-text('Send a test delivery')")
    expect(page.locator("table.deliveries")).to_contain_text("webhook.test")
    assert_accessible(page)
    page.once("dialog", lambda dialog: dialog.accept())  # "Delete … and its delivery log?"
    page.click("button:has-text('Delete endpoint')")
    page.wait_for_url("**/settings/webhooks/")
    expect(page.locator(".msg-success")).to_contain_text("Deleted the webhook endpoint")
