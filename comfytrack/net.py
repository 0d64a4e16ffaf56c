"""What every outbound connection shares: who we say we are, which addresses are off limits, how a failed
exchange is described (`describe_failure`) and how long to wait before trying again (`backoff`).

Used by the provider clients (`providers/clients/transport.py`) and by what fetches or posts to URLs we
do not trust (`comfytrack/safe_http.py`: the output archive, webhook delivery, alert sending), all of it over
aiohttp. Plain Python and aiohttp only, no Django, so the provider clients can use it too.

Two policies over one classification of addresses (`blocked_reason`):
- untrusted URLs (output links, webhook targets): only public unicast addresses, unless allow-listed
  (comfytrack.safe_http.HostGuard);
- provider API calls: a provider's base URL is set by the organization's staff and a self-hosted
  ComfyUI on a private network or loopback is the main use, so only link-local and cloud-metadata
  addresses are refused (`refuse_link_local`): the metadata service hands out the host's cloud
  credentials to whoever asks, and nothing a provider API needs lives on link-local addresses.
"""

from __future__ import annotations

import email.utils
import ipaddress
import math
import random
import socket
import ssl
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import cache

import aiohttp
import certifi
from aiohttp.abc import AbstractResolver, ResolveResult

from comfytrack import __version__

USER_AGENT = f"comfytrack/{__version__}"


# The same words for the same failure, whichever library saw it and whoever was being called.
COULD_NOT_CONNECT = "could not connect (is the address right and the server up?)"
NOT_HTTP = "the URL is not http(s)"
BROKEN_PROTOCOL = "the server closed the connection or broke the HTTP protocol"
TIMED_OUT = "timed out"


def describe_failure(exc: BaseException) -> str:
    """What went wrong in an HTTP exchange (aiohttp's errors, asyncio's timeouts), in words a person can
    act on."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return COULD_NOT_CONNECT
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return NOT_HTTP
    # ClientResponseError: an unparseable status line or headers.
    broken = aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientOSError
    if isinstance(exc, broken | aiohttp.ClientResponseError):
        return BROKEN_PROTOCOL
    if isinstance(exc, TimeoutError):
        return TIMED_OUT
    return type(exc).__name__


@cache
def ssl_context() -> ssl.SSLContext:
    """certifi's CA bundle, whatever the system or SSL_CERT_FILE say, loaded once per process (it costs
    ~40 ms): every outbound connection verifies against the same roots."""
    return ssl.create_default_context(cafile=certifi.where())


def backoff(
    attempt: int, *, base: float, cap: float, factor: float = 2.0, spread: float = 0.5, not_before: float = 0.0
) -> timedelta:
    """How long to wait after a failed attempt (0 for the first failure): exponential (`base` ·
    `factor`^attempt seconds, at most `cap`), a random point in the top `spread` of that (the upper half
    by default), so failures that happened together do not retry together, and never sooner than
    `not_before` seconds (the other side's Retry-After). The one back-off: each user picks its scale
    (the sweep, the archive, webhook deliveries, alert messages)."""
    ceiling = min(base * factor ** min(max(attempt, 0), 30), cap)
    return timedelta(seconds=max(random.uniform(ceiling * (1 - spread), ceiling), not_before))


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is delay-seconds or an HTTP-date (RFC 9110 §10.2.3); clamp to [1 s, 1 h]."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 1.0), 3600.0)


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services (AWS/GCP/Azure, AWS IPv6, Alibaba, ECS task metadata): refused even for an
# allow-listed host, and for provider calls.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)
# Not covered by `is_global`'s complement in every Python version, so listed explicitly.
_EXTRA_BLOCKED = tuple(
    ipaddress.ip_network(n) for n in ("100.64.0.0/10", "0.0.0.0/8", "192.0.0.0/24", "198.18.0.0/15", "64:ff9b:1::/48")
)


class AddressRefused(Exception):
    """A destination the address rules refuse: a provider call's (`refuse_link_local`) or an untrusted URL's
    (`comfytrack.safe_http.HostGuard`). The message says what was refused and why. Not an OSError, so
    aiohttp lets it through its connector unwrapped."""


def parse_ip(host: str) -> IPAddress | None:
    """The IP address a URL's host is, or None for a name ("[::1]" and "fe80::1%eth0" forms included)."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d) or -compatible (::a.b.c.d) IPv6 address."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    value = int(ip)  # the deprecated compatible form: some stacks still route it to the IPv4 address
    return ipaddress.IPv4Address(value & 0xFFFFFFFF) if value >> 32 == 0 and value > 1 else None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address, or None if it is one."""
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        reason = blocked_reason(embedded)
        return f"{reason} (IPv4-mapped)" if reason else None
    checks = (
        (ip in METADATA_ADDRESSES, "a cloud metadata address"),
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (any(ip in net for net in _EXTRA_BLOCKED if net.version == ip.version), "a reserved or shared address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
        (not ip.is_global, "a non-public address"),
    )
    return next((reason for hit, reason in checks if hit), None)


def link_local_reason(ip: IPAddress) -> str | None:
    """Why a provider call must not go to `ip` (link-local or cloud metadata, mapped forms included), or None."""
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        reason = link_local_reason(embedded)
        return f"{reason} (IPv4-mapped)" if reason else None
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_link_local:
        return "a link-local address"
    return None


def refuse_link_local(host: str, addresses: Iterable[str]) -> None:
    """Raise AddressRefused if any address `host` resolved to is link-local or a metadata service."""
    for address in addresses:
        ip = parse_ip(address)
        reason = link_local_reason(ip) if ip is not None else "not an IP address"
        if reason:
            raise AddressRefused(f"refused to connect to {host}: it is {reason} ({address})")


class LinkLocalGuardResolver(AbstractResolver):
    """The system resolver, refusing any answer with a link-local or metadata address.

    aiohttp connects only to the addresses this returns, so the check and the connection use the same
    answer (no DNS-rebinding window). aiohttp does not resolve IP literals: `refuse_link_local` on the
    URL's host covers those before sending.
    """

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        refuse_link_local(host, [r["host"] for r in results])
        return results

    async def close(self) -> None:
        await self._inner.close()
