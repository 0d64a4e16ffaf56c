"""The stored-XSS attack through archived outputs, replayed in a real browser (Debian's Chromium).

A provider names an output `evil.html` whose page loads another archived output, `evil.js`, from our
origin; the script mints an API key with the victim's session. A member opens the file from the run
page and by its URL: nothing may run. A verified image still shows in the browser.
"""

from __future__ import annotations

import pytest
from playwright import sync_api as playwright_api

from accounts.models import ApiKey
from comfytrack.testing.browser import off_loop
from runs.archive import archive_due_outputs
from runs.models import RunOutput, Status
from runs.tests.archive_helpers import body, local_server, png_of_size

pytestmark = [pytest.mark.django_db(transaction=True)]

MARKER = "/planted-script-ran/"
EXPLOIT_JS = b"""
window.top.planted = true;
fetch("%s");
(async () => {
  const form = await (await fetch("/settings/api-keys/")).text();
  const token = form.match(/name="csrfmiddlewaretoken" value="([^"]+)"/)[1];
  await fetch("/settings/api-keys/new/", {method: "POST", body: new URLSearchParams(
    {csrfmiddlewaretoken: token, name: "minted-by-planted-script"})});
  fetch("%s?minted");
})();
""" % (MARKER.encode(), MARKER.encode())


def _archive(provider, make_run, files: dict[str, tuple[bytes, str]]) -> dict[str, RunOutput]:
    """Archive `files` (name → bytes, declared type) as one run's outputs, served by a loopback "provider"."""
    run = make_run(provider, status=Status.SUCCEEDED)
    with local_server({f"/{name}": body(data, declared) for name, (data, declared) in files.items()}) as server:
        provider.base_url = server.root
        provider.save(update_fields=["base_url"])
        outputs = {
            name: RunOutput.objects.create(
                run=run, key=name, kind=RunOutput.Kind.FILE, filename=name, provider_url=f"{server.root}/{name}"
            )
            for name in files
        }
        assert off_loop(archive_due_outputs) == len(files)
    return {name: RunOutput.objects.get(pk=o.pk) for name, o in outputs.items()}


@pytest.fixture
def seen(page):
    """Every URL the browser requested, in any frame or tab of the page's context."""
    urls: list[str] = []
    page.context.on("request", lambda request: urls.append(request.url))
    return urls


def test_an_archived_page_loading_an_archived_script_runs_nothing(page, seen, org, make_provider, make_run):
    page.wait_for_load_state("networkidle")  # the runs page's own requests first (one SQLite connection)
    provider = make_provider(org, name="Hostile", kind="comfyui", secret={})
    (script,) = _archive(provider, make_run, {"evil.js": (EXPLOIT_JS, "text/javascript")}).values()
    html = b'<!doctype html><title>ok</title><script src="/outputs/%s/file/"></script>' % str(script.code).encode()
    html += b"<script>window.top.planted = true; fetch('%s?inline');</script>" % MARKER.encode()
    page_output = _archive(provider, make_run, {"evil.html": (html, "text/html")})["evil.html"]

    # The victim opens the file's URL (dashboard and API), as a planted link would make them do.
    for url in (f"/outputs/{page_output.code}/file/", f"/api/v1/outputs/{page_output.code}/file"):
        try:
            page.goto(url)
        except playwright_api.Error as exc:  # a download aborts the navigation
            assert "Download is starting" in str(exc) or "ERR_ABORTED" in str(exc), exc
        page.wait_for_timeout(300)
    page.wait_for_timeout(500)  # time for the exploit's fetches, had it run
    assert not [url for url in seen if MARKER in url], seen
    assert not ApiKey.objects.filter(name="minted-by-planted-script").exists()

    # The victim clicks the file name on the run page: the browser downloads it, it never opens.
    page.goto(f"/runs/{page_output.run.code}/")
    with page.expect_download() as download:
        page.click("a:has-text('evil.html')")
    assert download.value.suggested_filename == "evil.html"
    assert page.evaluate("window.planted === undefined")
    assert not [url for url in seen if MARKER in url], seen


def test_a_verified_image_still_opens_in_the_browser(page, org, make_provider, make_run):
    page.wait_for_load_state("networkidle")
    provider = make_provider(org, name="Images", kind="comfyui", secret={})
    image = _archive(provider, make_run, {"photo.png": (png_of_size(64, 48), "image/png")})["photo.png"]
    assert image.content_verified
    response = page.goto(f"/outputs/{image.code}/file/")
    assert response.headers["content-type"] == "image/png"
    assert "sandbox" in response.headers["content-security-policy"]
    # Chromium's image viewer shows it (a CSP that blocked it would log "Refused to load the image").
    playwright_api.expect(page.locator("img")).to_have_count(1)
    assert page.locator("img").evaluate("img => img.naturalWidth") == 64
