"""A real HTTP server on 127.0.0.1 for the provider clients' contract tests.

The clients send through their production sender (`AiohttpSender`) over a real socket to this server;
a test only says how the server answers. Handlers take an `httpx.Request` and return an
`httpx.Response` (or a coroutine of one): httpx's models serve as plain values here, a readable way to
write a canned answer and to assert on what the client sent; no httpx code sends anything.

A handler that raises (a failed assertion, an unexpected request) answers 500, which a client may well
turn into the `ProviderError` a test expects; so the failure is also kept, and
`providers/tests/conftest.py` fails the test with it.
"""

from __future__ import annotations

import inspect
import json
import socket
import threading
import traceback
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

import httpx
from aiohttp import web
from multidict import CIMultiDict

from providers.clients.event_loop import new_event_loop

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]
# Set by aiohttp on every answer from the body it sends.
_COMPUTED_HEADERS = frozenset({"content-length", "transfer-encoding"})


class LoopbackServer:
    """One aiohttp server on its own thread and event loop, answering every method and path with
    `self.handler`."""

    def __init__(self) -> None:
        self.handler: Handler | None = None
        self.failures: list[str] = []
        self.loop = new_event_loop()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._answer)
        runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        threading.Thread(target=self.loop.run_forever, name="loopback-provider", daemon=True).start()

    def answer_with(self, handler: Handler) -> None:
        self.handler = handler

    async def _answer(self, request: web.Request) -> web.Response:
        seen = httpx.Request(
            request.method,
            f"{self.url}{request.raw_path}",
            headers=list(request.raw_headers),
            content=await request.read(),
        )
        try:
            if self.handler is None:
                raise AssertionError(f"no handler set for {request.method} {request.raw_path}")
            answer = self.handler(seen)
            response = await answer if inspect.isawaitable(answer) else answer
        except Exception:
            self.failures.append(traceback.format_exc())
            return web.Response(status=500, text="the test's handler failed")
        headers = CIMultiDict(
            (name, value) for name, value in response.headers.multi_items() if name.lower() not in _COMPUTED_HEADERS
        )
        return web.Response(status=response.status_code, body=response.content, headers=headers)

    def take_failures(self) -> list[str]:
        failures, self.failures = self.failures, []
        return failures


@cache
def provider_server() -> LoopbackServer:
    """The one loopback server of this test process (started on first use, stopped with the process)."""
    return LoopbackServer()


def serve(handler: Handler) -> str:
    """Answer the next requests with `handler`; returns the server's root URL (http://127.0.0.1:port)."""
    server = provider_server()
    server.answer_with(handler)
    return server.url


def closed_port_url() -> str:
    """A loopback URL nothing listens on: connecting there is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


Answer = httpx.Response | tuple[int, Any] | Callable[[httpx.Request], httpx.Response]


class Router:
    """Answers (method, path) with a canned response and records every request.

    `headers` are asserted on every request (auth), so a client that forgets them fails loudly.
    A list of answers is served in order (one per call) for routes hit more than once.
    """

    def __init__(self, routes: dict[tuple[str, str], Answer | list[Answer]], headers: dict[str, str] | None = None):
        self.routes = {key: list(value) if isinstance(value, list) else [value] for key, value in routes.items()}
        self.headers = headers or {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for name, value in self.headers.items():
            assert request.headers.get(name) == value, f"{name} header missing or wrong on {request.url}"
        key = (request.method, request.url.path)
        assert key in self.routes, f"unexpected request {key}"
        answers = self.routes[key]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        if isinstance(answer, httpx.Response):
            return answer
        status, body = answer
        return httpx.Response(status, json=body)

    def serve(self) -> str:
        """Make the loopback server answer through this router; returns its root URL."""
        return serve(self)

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


# Bad answers every client must turn into a ProviderError.
BAD_RESPONSES: list[tuple[str, httpx.Response]] = [
    (
        "html",
        httpx.Response(
            502, text="<html><body><h1>502 Bad Gateway</h1></body></html>", headers={"content-type": "text/html"}
        ),
    ),
    ("malformed", httpx.Response(200, content=b"{'status': not json")),
    ("truncated", httpx.Response(200, content=b'{"status": 10, "data": {"sta')),
    ("html-200", httpx.Response(200, text="<!doctype html><title>Login</title>")),
    ("5xx", httpx.Response(503, json={"message": "Service Unavailable"})),
    ("empty", httpx.Response(200, content=b"")),
]
