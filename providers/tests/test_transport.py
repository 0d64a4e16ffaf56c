"""The production sender (aiohttp) against real loopback servers misbehaving in ways the fake
provider's fault modes do not cover: bodies without a length, bodies that stop halfway, refused
connections, URLs that are not http(s)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from providers.clients.transport import AiohttpSender, TransportFailure

WHAT = "Test GET /thing"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _send(handler: Handler, *, timeout: float = 2.0, max_bytes: int = 1000, path: str = "/thing"):
    app = web.Application()
    app.router.add_get("/thing", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sender = AiohttpSender(headers={"Authorization": "Bearer t"}, timeout=timeout, max_connections=4)
    try:
        return await sender.send("GET", f"http://127.0.0.1:{port}{path}", WHAT, max_bytes)
    finally:
        await sender.close()
        await runner.cleanup()


def send(handler: Handler, **kwargs):
    return asyncio.run(_send(handler, **kwargs))


async def _chunks(request: web.Request, parts: list[bytes], pause: float = 0.0) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for part in parts:
        await response.write(part)
        await asyncio.sleep(pause)
    await response.write_eof()
    return response


def test_it_reads_a_chunked_body_and_keeps_the_headers() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        assert request.headers["Authorization"] == "Bearer t"
        assert request.headers["User-Agent"].startswith("comfytrack/")
        return await _chunks(request, [b'{"a": ', b"1}"])

    response = send(handler)
    assert (response.status_code, response.json(), response.is_success) == (200, {"a": 1}, True)
    assert response.headers["content-type"] == "application/json"
    assert response.path == "/thing"


def test_it_stops_reading_a_body_without_length_past_the_cap() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await _chunks(request, [b"x" * 600] * 5)

    with pytest.raises(TransportFailure, match=r"Test GET /thing answered with more than the 1,000 bytes allowed\."):
        send(handler)


def test_it_refuses_a_declared_length_over_the_cap_before_reading() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"y" * 5000)

    with pytest.raises(TransportFailure, match=r"answered with 5,000 bytes, more than the 1,000 allowed"):
        send(handler)


def test_it_names_a_body_that_stalls_halfway() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await _chunks(request, [b'{"a": ', b"1}"], pause=1.5)

    with pytest.raises(TransportFailure, match=r"stalled while sending its answer"):
        send(handler, timeout=0.3)


def test_it_times_out_a_server_that_never_answers() -> None:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="late")

    with pytest.raises(TransportFailure, match=r"Test GET /thing timed out after 0.3 s\."):
        send(handler, timeout=0.3)


def test_it_explains_a_refused_connection() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens there

    async def go():
        sender = AiohttpSender(headers={}, timeout=1.0, max_connections=1)
        try:
            await sender.send("GET", f"http://127.0.0.1:{port}/", WHAT, 1000)
        finally:
            await sender.close()

    with pytest.raises(TransportFailure, match=r"failed: could not connect \(is the address right"):
        asyncio.run(go())


def test_it_explains_a_url_that_is_not_http() -> None:
    async def go():
        sender = AiohttpSender(headers={}, timeout=1.0, max_connections=1)
        try:
            await sender.send("GET", "ftp://127.0.0.1/x", WHAT, 1000)
        finally:
            await sender.close()

    with pytest.raises(TransportFailure, match=r"the URL is not http\(s\)"):
        asyncio.run(go())
