"""The real-browser fixtures every app's browser tests use: Playwright driving Debian's Chromium against
pytest-django's live server. A pytest plugin (the root conftest lists it in `pytest_plugins`), so a test
module asks for `page` or `phone` by name and imports nothing from another test module.

Playwright cannot download its own browsers here, so we launch Debian's Chromium (`make test`
installs it through scripts/ensure-chromium.sh; COMFYTRACK_CHROMIUM points elsewhere). A missing
browser fails these tests rather than skipping them. Each page collects console errors: any CSP
violation ("Refused to …") fails the test. Pages are checked with axe-core (the npm package pinned in
package-lock.json, installed by scripts/ensure-axe.sh). Screenshots go to a temporary folder, or to
docs/screenshots/ for the README with COMFYTRACK_SCREENSHOTS=docs/screenshots.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.servers.basehttp import ThreadedWSGIServer
from django.db import connection
from django.test.testcases import LiveServerThread
from playwright import sync_api as playwright_api
from playwright.sync_api import Browser, ConsoleMessage, Page, ViewportSize

CHROMIUM = os.environ.get("COMFYTRACK_CHROMIUM", "/usr/bin/chromium")
AXE = Path(settings.BASE_DIR) / "node_modules" / "axe-core" / "axe.min.js"
# The README's screenshots are refreshed with COMFYTRACK_SCREENSHOTS=docs/screenshots; otherwise they go
# to a temporary folder, so an ordinary test run leaves the work tree untouched.
SHOTS = Path(os.environ.get("COMFYTRACK_SCREENSHOTS") or tempfile.mkdtemp(prefix="comfytrack-shots-")).resolve()
DESKTOP: ViewportSize = {"width": 1280, "height": 860}
PHONE: ViewportSize = {"width": 390, "height": 844}
# axe-core, run in the page: the serious and critical violations, each with a few of its elements.
AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations
    .filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(" | ")}`);
}"""
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


class _OneAppCallAtATime(ThreadedWSGIServer):
    """Threaded (Chromium keeps connections alive) but runs one Django request at a time."""

    lock = threading.Lock()

    def set_app(self, application: Any) -> None:
        def serial(environ: Any, start_response: Any) -> Any:
            with self.lock:
                return application(environ, start_response)

        super().set_app(serial)


if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The in-memory SQLite test database is one connection shared by the live server's threads:
    # parallel requests (a gallery's thumbnails) would use it concurrently. Serve one at a time.
    LiveServerThread.server_class = _OneAppCallAtATime


# One browser per test module. Module scope rather than session: Playwright's sync API keeps an event
# loop running in this thread until it exits, and the rest of the suite calls asyncio.run().
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not AXE.exists():
        pytest.fail(f"axe-core is missing at {AXE}: run scripts/ensure-axe.sh (make test does)")
    # While Playwright's loop runs in this thread, Django would refuse the test's own database calls
    # (they run on the thread, not in the loop); the live server runs in another thread.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with playwright_api.sync_playwright() as p:
            launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield launched
            launched.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def open_page(browser: Browser, base_url: str, viewport: ViewportSize, username: str = "alice") -> Page:
    """A signed-in page in a fresh context: console errors collected (`page.console_errors`), axe-core
    injected into every page (as an init script, which the page's CSP does not apply to)."""
    context = browser.new_context(viewport=viewport, base_url=base_url)
    context.add_init_script(path=str(AXE))
    page = context.new_page()
    page.set_default_timeout(8000)
    errors: list[str] = []
    page.console_errors = errors  # type: ignore[attr-defined]  # an attribute of our own: tests read and trim it

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto("/login/")
    assert_accessible(page)
    if viewport == DESKTOP:
        shot(page, "login")
    page.fill("#id_username", username)
    page.fill("#id_password", "password")
    page.click("button[type=submit]")
    page.wait_for_url("**/runs/")
    return page


def _signed_in(browser: Browser, live_server: Any, settings: Any, viewport: ViewportSize) -> Iterator[Page]:
    settings.COMFYTRACK_POLL_SECONDS = 1
    page = open_page(browser, live_server.url, viewport)
    yield page
    assert page.console_errors == [], page.console_errors  # type: ignore[attr-defined]  # set by open_page
    page.context.close()


@pytest.fixture
def page(browser: Browser, live_server: Any, settings: Any, alice: Any) -> Iterator[Page]:
    """alice (owner of `org`) signed in, in a desktop-sized window; fails the test on a console error."""
    yield from _signed_in(browser, live_server, settings, DESKTOP)


@pytest.fixture
def phone(browser: Browser, live_server: Any, settings: Any, alice: Any) -> Iterator[Page]:
    """As `page`, in a phone-sized window."""
    yield from _signed_in(browser, live_server, settings, PHONE)


def assert_accessible(page: Page) -> None:
    violations = page.evaluate(AXE_RUN)
    assert violations == [], f"{page.url}: {violations}"


def assert_no_sideways_scroll(page: Page) -> None:
    width, viewport = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= viewport, f"{page.url} is {width} px wide in a {viewport} px window"


def shot(page: Page, name: str, *, full_page: bool = False) -> None:
    """A screenshot, at most 2,000 px tall, stored as a 256-colour PNG (the README's stay small)."""
    from PIL import Image

    path = SHOTS / f"{name}.png"
    # Pictures in view have loaded (the gallery's thumbnails are lazy).
    page.wait_for_function("[...document.images].every(i => i.complete || i.getBoundingClientRect().top > innerHeight)")
    page.screenshot(path=str(path), full_page=full_page)
    with Image.open(path) as taken:
        cropped = taken.crop((0, 0, taken.width, min(taken.height, 2000)))
    cropped.convert("RGB").quantize(256).save(path, optimize=True)


def off_loop[T](func: Callable[..., T], *args: Any) -> T:
    """Run `func` on another thread: provider clients and the archive run their own event loop, and
    Playwright's sync API holds one in the test's thread."""

    def call() -> T:
        try:
            return func(*args)
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()
