"""The fake provider server: an aiohttp app with one sub-app per provider kind.

In tests: `with FakeProviderServer() as fake: fake.base_url("comfyui")`.
From a shell: `python -m providers.fake --port 8189`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from importlib import import_module
from typing import Any

from aiohttp import web

from providers.fake import files
from providers.fake.state import STALE, FakeState, Faults

# kind -> (module under providers.fake, path prefix of the provider's documented base URL)
KINDS: dict[str, tuple[str, str]] = {
    "comfydeploy": ("providers.fake.comfydeploy", "/comfydeploy/api"),
    "comfycloud": ("providers.fake.comfycloud", "/comfycloud"),
    "comfyui": ("providers.fake.comfyui", "/comfyui"),
    "aws_esd": ("providers.fake.aws_esd", "/aws_esd/prod"),
    "speedpix": ("providers.fake.speedpix", "/speedpix"),
}

STATE_KEY = web.AppKey("state", FakeState)


def kind_of(request: web.Request) -> str:
    first = request.path.strip("/").split("/", 1)[0]
    return first if first in KINDS else ""


@web.middleware
async def faults_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Latency and fault modes, applied to provider routes (never to /_fake control routes)."""
    state: FakeState = request.app[STATE_KEY]
    kind = kind_of(request)
    if not kind:
        return await handler(request)
    if state.record_requests:
        state.requests.append((kind, request.method, request.path))
    faults = state.faults
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    mode = faults.take(kind)
    if mode == "5xx":
        return web.json_response({"detail": "Internal Server Error (fake)"}, status=502)
    if mode == "429":
        return web.json_response(
            {"detail": "Too many requests (fake)"}, status=429, headers={"Retry-After": str(faults.retry_after)}
        )
    if mode == "html":
        return web.Response(
            text="<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>",
            status=502,
            content_type="text/html",
        )
    if mode == "stall":
        await asyncio.sleep(faults.stall_seconds)
    if mode == "stale":
        request[STALE] = True
    response = await handler(request)
    if (
        mode in ("malformed", "truncated", "huge")
        and isinstance(response, web.Response)
        and isinstance(response.body, bytes)
    ):
        body = response.body
        if mode == "malformed":
            body = b"{'status': not json" + body[:20]
        elif mode == "truncated":
            body = body[: max(1, len(body) // 2)]
        else:
            body = b'{"padding": "' + b"x" * (9 * 1024 * 1024) + b'"}'
        return web.Response(body=body, status=response.status, content_type="application/json")
    return response


def make_app(state: FakeState | None = None) -> web.Application:
    app = web.Application(middlewares=[faults_middleware], client_max_size=16 * 1024 * 1024)
    app[STATE_KEY] = state or FakeState()
    for module_name, prefix in KINDS.values():
        module = import_module(module_name)
        sub = web.Application()
        sub[STATE_KEY] = app[STATE_KEY]
        module.setup(sub, app[STATE_KEY])
        app.add_subapp(prefix, sub)
    files.setup(app, app[STATE_KEY])
    app.router.add_post("/_fake/runs", control_add_runs)
    app.router.add_post("/_fake/runs/{kind}/{external_id}/force", control_force)
    app.router.add_post("/_fake/faults", control_faults)
    app.router.add_post("/_fake/restart/{kind}", control_restart)
    app.router.add_post("/_fake/reset", control_reset)
    app.router.add_get("/_fake/health", control_health)
    return app


async def control_health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def control_add_runs(request: web.Request) -> web.Response:
    """POST {"kind", "count"?, "script"?: [[offset, phase]...], "n_outputs"?, "ids"?, "workflow"?} -> {"ids": [...]}."""
    state = request.app[STATE_KEY]
    body = await request.json()
    kind = body.get("kind")
    if kind not in KINDS:
        return web.json_response({"error": f"unknown kind {kind!r}"}, status=400)
    ids = body.get("ids") or [None] * int(body.get("count", 1))
    script = [tuple(step) for step in body["script"]] if body.get("script") else None
    workflow = body.get("workflow") if isinstance(body.get("workflow"), dict) else None
    n_outputs = int(body.get("n_outputs", 1))
    created = [
        state.add_run(kind, external_id, script=script, n_outputs=n_outputs, workflow=workflow).external_id
        for external_id in ids
    ]
    return web.json_response({"ids": created})


async def control_force(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    run = state.runs.get((request.match_info["kind"], request.match_info["external_id"]))
    if run is None:
        return web.json_response({"error": "no such run"}, status=404)
    run.force((await request.json())["phase"])
    return web.json_response({"phase": run.phase()})


async def control_faults(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await request.json()
    state.faults = Faults(**{k: v for k, v in body.items() if k in Faults.__dataclass_fields__})
    return web.json_response({"faults": state.faults.__dict__})


async def control_restart(request: web.Request) -> web.Response:
    """POST /_fake/restart/{kind}: the provider forgets its runs, as a restarted ComfyUI does."""
    kind = request.match_info["kind"]
    if kind not in KINDS:
        return web.json_response({"error": f"unknown kind {kind!r}"}, status=400)
    return web.json_response({"forgotten": request.app[STATE_KEY].restart(kind)})


async def control_reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return web.json_response({"ok": True})


class FakeProviderServer:
    """Runs the fake in a background thread with its own event loop (for tests and benchmarks)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, state: FakeState | None = None) -> None:
        self.host = host
        self.port = port
        self.state = state or FakeState()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()

    # -- URLs ----------------------------------------------------------------------------------

    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}"

    def base_url(self, kind: str) -> str:
        return self.root + KINDS[kind][1]

    def secret(self, kind: str) -> dict[str, str]:
        return dict(self.state.secrets[kind])

    # -- shortcuts -----------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self.state.faults

    def set_faults(self, **kwargs: Any) -> Faults:
        self.state.faults = Faults(**kwargs)
        return self.state.faults

    def add_run(self, kind: str, external_id: str | None = None, **kwargs: Any):
        return self.state.add_run(kind, external_id, **kwargs)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeProviderServer:
        self._thread = threading.Thread(target=self._serve, name="fake-provider", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("fake provider server did not start")
        return self

    def _serve(self) -> None:
        self._loop = loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._runner = runner = web.AppRunner(make_app(self.state), access_log=None)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, self.host, self.port, backlog=1024)
        loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self._started.set()
        self._loop.run_forever()

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> FakeProviderServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def json_body(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


def now() -> float:
    return time.time()
