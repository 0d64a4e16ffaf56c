"""One way to build HTTP clients (STYLE.md rule 9).

The default transport is httpx-aiohttp's: httpx's API with aiohttp's connection pool, measured
several times faster than httpx's own async pool for the sweep's fan-out (DESIGN.md "Sync engine").
Tests pass `transport=httpx.MockTransport(handler)`: the one seam where HTTP is mocked.
"""

from __future__ import annotations

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from comfytrack import __version__

USER_AGENT = f"comfytrack/{__version__}"
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


def make_http_client(
    *,
    base_url: str = "",
    headers: dict[str, str] | None = None,
    timeout: float = 15.0,
    transport: httpx.AsyncBaseTransport | None = None,
    max_connections: int = 32,
) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    if transport is None:
        # trust_env=False: a stray HTTP(S)_PROXY in a worker's environment must not reroute provider traffic.
        transport = AiohttpTransport(limits=limits, trust_env=False)
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        timeout=httpx.Timeout(timeout, connect=5.0),
        transport=transport,
        follow_redirects=False,
        trust_env=False,
    )


def is_connect_failure(exc: BaseException) -> bool:
    """httpx-aiohttp 0.2 maps "connection refused" to httpx.ConnectTimeout (its exception table
    matches aiohttp's ClientConnectionError first); look at the cause to tell the two apart."""
    cause = exc.__cause__
    return isinstance(cause, aiohttp.ClientConnectorError) and not isinstance(cause, aiohttp.ServerTimeoutError)
