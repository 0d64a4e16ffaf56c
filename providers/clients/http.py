"""Shared HTTP constants, and the httpx client behind injected transports.

Provider clients send with aiohttp (`providers.clients.transport.AiohttpSender`); an httpx client is
built only around a transport a test injects (`httpx.MockTransport(handler)`: the one seam where HTTP
is mocked).
"""

from __future__ import annotations

import httpx

from comfytrack.net import USER_AGENT

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


def make_http_client(
    *,
    transport: httpx.AsyncBaseTransport,
    base_url: str = "",
    headers: dict[str, str] | None = None,
    timeout: float = 15.0,
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        timeout=httpx.Timeout(timeout, connect=5.0),
        transport=transport,
        follow_redirects=False,
        # A stray HTTP(S)_PROXY in a worker's environment must not reroute provider traffic.
        trust_env=False,
    )
