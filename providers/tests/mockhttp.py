"""A tiny router for `httpx.MockTransport` (the one mock seam; CONTRIBUTING.md "Tests") used by the contract tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

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

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


# Bad answers every client must turn into a ProviderError: (name, response, extra assertions).
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
