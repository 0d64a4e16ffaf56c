"""A small synchronous HTTP client for tests that talk to a real server process (gunicorn) over loopback.

http.client underneath: one connection per request, no redirects followed, no proxies, no decoding of a
compressed body (a test sees exactly what the server sent). An iterable body is sent chunked, without a
Content-Length.
"""

from __future__ import annotations

import http.client
import json as jsonlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# What a request to a server that is not (yet) there raises: refused, reset, timed out, or a broken answer.
Unreachable = (OSError, http.client.HTTPException)


@dataclass(frozen=True)
class Answer:
    status_code: int
    headers: http.client.HTTPMessage  # case-insensitive
    content: bytes
    sent_headers: Mapping[str, str]

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    content: bytes | Iterable[bytes] | None = None,
    timeout: float = 30,
) -> Answer:
    parts = urlsplit(url)
    sent = dict(headers or {})
    body: bytes | Iterable[bytes] | None = content
    if json is not None:
        body = jsonlib.dumps(json).encode()
        sent.setdefault("Content-Type", "application/json")
    chunked = body is not None and not isinstance(body, bytes)
    if chunked:
        sent["Transfer-Encoding"] = "chunked"
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        path = parts.path or "/"
        connection.request(
            method, f"{path}?{parts.query}" if parts.query else path, body=body, headers=sent, encode_chunked=chunked
        )
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read(), sent)
    finally:
        connection.close()


def get(url: str, **kwargs: Any) -> Answer:
    return request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> Answer:
    return request("POST", url, **kwargs)


class Client:
    """Requests under one base URL with the same headers (an API key, a session cookie)."""

    def __init__(self, base_url: str, headers: Mapping[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})

    def get(self, path: str, **kwargs: Any) -> Answer:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Answer:
        return self.request("POST", path, **kwargs)

    def request(self, method: str, path: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any) -> Answer:
        return request(method, f"{self.base_url}{path}", headers={**self.headers, **(headers or {})}, **kwargs)
