"""A real HTTP server on 127.0.0.1 for the provider clients' contract tests.

The clients send through their production sender (`AiohttpSender`) over a real socket to this server;
a test only says how the server answers. Handlers take a `Request` (what arrived: method, URL, headers,
body) and return a `Response` (or a coroutine of one), two plain values defined here.

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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cache
from json import dumps
from typing import Any

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from providers.clients.event_loop import new_event_loop


@dataclass(frozen=True)
class Request:
    """What the server received: the URL as sent (`url.path`, `url.query`), headers case-insensitive."""

    method: str
    url: URL
    headers: CIMultiDictProxy[str]
    content: bytes


class Response:
    """A canned answer: `Response(200, json={...})`, `Response(502, text="...")`, `Response(200, content=b"...")`;
    a JSON or text body gets its Content-Type unless `headers` name one."""

    def __init__(
        self,
        status_code: int,
        *,
        json: Any = None,
        text: str | None = None,
        content: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.headers: CIMultiDict[str] = CIMultiDict(headers or {})
        if json is not None:
            content = dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            self.headers.setdefault("Content-Type", "application/json")
        elif text is not None:
            content = text.encode()
            self.headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        self.content = content


Handler = Callable[[Request], Response | Awaitable[Response]]
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
        seen = Request(
            request.method, URL(f"{self.url}{request.raw_path}", encoded=True), request.headers, await request.read()
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
            (name, value) for name, value in response.headers.items() if name.lower() not in _COMPUTED_HEADERS
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


Answer = Response | tuple[int, Any] | Callable[[Request], Response]


class Router:
    """Answers (method, path) with a canned response and records every request.

    `headers` are asserted on every request (auth), so a client that forgets them fails loudly.
    A list of answers is served in order (one per call) for routes hit more than once.
    """

    def __init__(self, routes: dict[tuple[str, str], Answer | list[Answer]], headers: dict[str, str] | None = None):
        self.routes = {key: list(value) if isinstance(value, list) else [value] for key, value in routes.items()}
        self.headers = headers or {}
        self.requests: list[Request] = []

    def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        for name, value in self.headers.items():
            assert request.headers.get(name) == value, f"{name} header missing or wrong on {request.url}"
        key = (request.method, request.url.path)
        assert key in self.routes, f"unexpected request {key}"
        answers = self.routes[key]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if callable(answer) and not isinstance(answer, Response):
            return answer(request)
        if isinstance(answer, Response):
            return answer
        status, body = answer
        return Response(status, json=body)

    def serve(self) -> str:
        """Make the loopback server answer through this router; returns its root URL."""
        return serve(self)

    def calls(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]


def body_of(request: Request) -> Any:
    return json.loads(request.content)


# Bad answers every client must turn into a ProviderError.
BAD_RESPONSES: list[tuple[str, Response]] = [
    (
        "html",
        Response(502, text="<html><body><h1>502 Bad Gateway</h1></body></html>", headers={"content-type": "text/html"}),
    ),
    ("malformed", Response(200, content=b"{'status': not json")),
    ("truncated", Response(200, content=b'{"status": 10, "data": {"sta')),
    ("html-200", Response(200, text="<!doctype html><title>Login</title>")),
    ("5xx", Response(503, json={"message": "Service Unavailable"})),
    ("empty", Response(200, content=b"")),
]
