"""How a client's requests travel: one sender, and the small response type a client reads.

`ProviderResponse` is all a client sees of an answer: status, headers and the body, already read and
capped. `AiohttpSender` is the one sender: the sweep, views and commands send through it, and so do the
clients' contract tests, against a loopback server (`providers/tests/loopback.py`), so what they assert
is what goes on the wire.

It is aiohttp used directly, not httpx over an aiohttp transport, because the per-run path (one GET per
run, thousands per sweep, on two cores) is bound by the CPU each request costs, and a request through
httpx's client and models costs about 2.5 times the CPU of the same request through aiohttp alone,
trimmed httpx included: the floor of 1,000 runs/s would not hold. `bench/http_sender.py` measures both
side by side; docs/architecture.md ("HTTP to providers") has the figures.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from comfytrack.net import (
    NOT_HTTP,
    USER_AGENT,
    AddressRefused,
    LinkLocalGuardResolver,
    describe_failure,
    parse_ip,
    refuse_link_local,
    ssl_context,
)

CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


class TransportFailure(Exception):
    """No complete answer; the message is ready for a person ("ComfyUI GET /queue timed out after 15 s.").

    permanent: sending again cannot help (the destination is refused).
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def refuse_link_local_url(url: str, what: str) -> None:
    """Provider calls may reach private networks and loopback (self-hosted ComfyUI), never a link-local or
    cloud-metadata address. Names are checked where they resolve (LinkLocalGuardResolver); IP literals,
    which aiohttp does not resolve, here. This runs for every request of a sweep, so the URL is only cut at
    its authority (host[:port]), whose verdict is cached."""
    authority = url.partition("://")[2].partition("/")[0].partition("?")[0]
    refusal = _literal_refusal(authority)
    if refusal:
        raise TransportFailure(f"{what} was not sent: {refusal}", permanent=True)


@lru_cache(maxsize=1024)
def _literal_refusal(authority: str) -> str | None:
    host = urlsplit(f"//{authority}").hostname or ""
    if parse_ip(host) is None:
        return None
    try:
        refuse_link_local(host, [host])
    except AddressRefused as exc:
        return refusal_text(exc)
    return None


def refusal_text(exc: AddressRefused) -> str:
    return f"{exc}. A provider's base URL may point at a private network, not there."


@dataclass(slots=True)
class ProviderResponse:
    status_code: int
    headers: Mapping[str, str]  # case-insensitive (aiohttp's CIMultiDictProxy)
    content: bytes
    method: str
    url: str

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def text(self) -> str:
        return self.content.decode(_charset(self.headers.get("content-type", "")), errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            try:
                return codecs.lookup(value.strip('"')).name
            except LookupError:
                break
    return "utf-8"


class AiohttpSender:
    """One aiohttp session per client context: a pooled connection per concurrent request."""

    def __init__(self, *, headers: Mapping[str, str], timeout: float, max_connections: int) -> None:
        self.timeout = timeout
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, ssl=ssl_context(), resolver=LinkLocalGuardResolver()),
            headers={"User-Agent": USER_AGENT, **headers},
            # No overall deadline (a big body may take longer), but every read must progress within
            # `timeout`; the pool wait and connect are bounded too.
            timeout=aiohttp.ClientTimeout(
                total=None, connect=timeout + CONNECT_TIMEOUT, sock_connect=CONNECT_TIMEOUT, sock_read=timeout
            ),
            # A stray HTTP(S)_PROXY in a worker's environment must not reroute provider traffic.
            trust_env=False,
            raise_for_status=False,
        )

    async def send(self, method: str, url: str, what: str, max_bytes: int, **kwargs: Any) -> ProviderResponse:
        if "content" in kwargs:
            kwargs["data"] = kwargs.pop("content")
        if params := kwargs.get("params"):
            kwargs["params"] = {key: str(value) for key, value in params.items()}
        refuse_link_local_url(url, what)
        try:
            async with self.session.request(method, url, allow_redirects=False, **kwargs) as response:
                refuse_declared_size(response.content_length, max_bytes, what)
                try:
                    body = await read_capped(response.content.iter_any(), max_bytes, what)
                except (TimeoutError, aiohttp.ServerTimeoutError):
                    raise TransportFailure(f"{what} stalled while sending its answer.") from None
                except aiohttp.ClientError as exc:
                    raise TransportFailure(f"{what} broke off its answer: {describe_failure(exc)}.") from None
                return ProviderResponse(response.status, response.headers, body, method, url)
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise TransportFailure(f"{what} timed out after {self.timeout:g} s.") from None
        except AddressRefused as exc:
            raise TransportFailure(f"{what} was not sent: {refusal_text(exc)}", permanent=True) from None
        except aiohttp.ClientError as exc:
            raise TransportFailure(f"{what} failed: {describe_failure(exc)}.") from None
        except ValueError:  # yarl: a URL it cannot parse
            raise TransportFailure(f"{what} failed: {NOT_HTTP}.") from None

    async def close(self) -> None:
        await self.session.close()


def refuse_declared_size(declared: int | None, max_bytes: int, what: str) -> None:
    """A Content-Length over the cap is refused before a byte of the body is read."""
    if declared is not None and declared > max_bytes:
        raise TransportFailure(too_big(what, max_bytes, declared))


async def read_capped(chunks: AsyncIterator[bytes], max_bytes: int, what: str) -> bytes:
    """The whole body, but never more than max_bytes: a runaway body must not eat the worker's memory."""
    parts: list[bytes] = []
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise TransportFailure(too_big(what, max_bytes))
        parts.append(chunk)
    return b"".join(parts)


def too_big(what: str, max_bytes: int, declared: int | None = None) -> str:
    if declared is not None:
        return f"{what} answered with {declared:,} bytes, more than the {max_bytes:,} allowed."
    return f"{what} answered with more than the {max_bytes:,} bytes allowed."
