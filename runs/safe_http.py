"""Fetching untrusted URLs without becoming an SSRF proxy.

Output URLs come from provider responses, so a hostile or compromised provider could point us at
our own network (the cloud metadata service, a database admin page on localhost, …). Defences:

1. Only http(s), at most `MAX_REDIRECTS` redirects, each hop checked before it is sent.
2. Every address a host name resolves to is checked *inside the connector* (`GuardedResolver`), so
   aiohttp connects to exactly the addresses we validated: no second DNS lookup to rebind.
   aiohttp skips the resolver for IP literals, which `HostGuard.check_url` checks up front.
3. Private, loopback, link-local, multicast, reserved, CGNAT and unspecified addresses (also in
   IPv4-mapped/compatible IPv6 form) are refused, unless host:port is the provider's own base URL
   (self-hosted ComfyUI on a LAN is normal) or allow-listed by the caller's setting
   (COMFYTRACK_ARCHIVE_ALLOW_PRIVATE_HOSTS for downloads). Cloud metadata addresses are refused even then.
4. Auth headers only go to the provider's own origin, and never to a redirect target: Comfy Cloud's
   /api/view answers 302 to a signed URL, which refuses a request carrying the API key even when it is
   on the same host.
5. A size cap (streamed, checked against Content-Length first), a total deadline, trust_env=False.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from httpx_aiohttp import AiohttpTransport

from comfytrack.net import METADATA_ADDRESSES, USER_AGENT, blocked_reason, describe_failure, parse_ip

MAX_REDIRECTS = 3
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}


class DownloadError(Exception):
    """A download that did not succeed, in words a person can act on (never with a URL's query string)."""

    def __init__(self, message: str, *, status_code: int | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.permanent = permanent

    def __str__(self) -> str:
        return self.message


class Refused(DownloadError):
    """The guard refused a destination (SSRF). Not an OSError, so aiohttp lets it through unwrapped."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


def redact(url: httpx.URL | str) -> str:
    """A URL safe for messages and logs: no userinfo, query or fragment (signed URLs carry credentials)."""
    url = httpx.URL(str(url))
    port = f":{url.port}" if url.port else ""
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host}{port}{url.path}"


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return url.scheme, url.host.lower(), url.port or DEFAULT_PORTS.get(url.scheme, 0)


def parse_allowance(entry: str) -> tuple[str, int | None]:
    """Parse "host", "host:port", "[v6]" or "[v6]:port" into (host, port or None for any port)."""
    entry = entry.strip().lower()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, int(port) if port.isdigit() else None
    return entry, None


@dataclass(frozen=True)
class HostGuard:
    """Which destinations one provider's downloads (or one pass of webhook deliveries) may reach.

    purpose: what a refusal says was refused, "fetch from" or "send to". setting: the name of the
    allow-list setting a refusal points to. own_origin: (scheme, host, port) of the provider's base
    URL; its host:port may be private and is the only origin that receives auth headers.
    allowed: extra host[:port] entries from that setting.
    """

    purpose: str
    setting: str
    own_origin: tuple[str, str, int] | None = None
    allowed: tuple[tuple[str, int | None], ...] = ()

    @classmethod
    def for_base_url(
        cls, base_url: str | None, allowed: Iterable[str] = (), *, purpose: str, setting: str
    ) -> HostGuard:
        own = _origin(httpx.URL(base_url)) if base_url else None
        allowances = tuple(parse_allowance(a) for a in allowed if a.strip())
        return cls(purpose=purpose, setting=setting, own_origin=own, allowed=allowances)

    def is_own_origin(self, url: httpx.URL) -> bool:
        return self.own_origin is not None and _origin(url) == self.own_origin

    def may_be_private(self, host: str, port: int) -> bool:
        host = host.strip("[]").lower()
        if self.own_origin and (host, port) == self.own_origin[1:]:
            return True
        return any(host == h and (p is None or p == port) for h, p in self.allowed)

    def check_url(self, url: httpx.URL) -> None:
        """Before sending: scheme, host present, and IP literals (aiohttp never resolves those)."""
        if url.scheme not in DEFAULT_PORTS:
            raise Refused(
                f"Refused to {self.purpose} a {url.scheme or 'relative'}: URL; only http and https are allowed."
            )
        if not url.host:
            raise Refused(f"Refused to {self.purpose} a URL without a host.")
        ip = parse_ip(url.host)
        if ip is not None:
            self.check_addresses(url.host, url.port or DEFAULT_PORTS[url.scheme], [str(ip)])

    def check_addresses(self, host: str, port: int, addresses: Iterable[str]) -> None:
        """Refuse if any address is not public (fail closed: an empty answer is refused too)."""
        addresses = list(addresses)
        if not addresses:
            raise Refused(f"Refused {host}: its name resolved to no address.")
        allowed = self.may_be_private(host, port)
        for address in addresses:
            ip = parse_ip(address)
            if ip is None:
                raise Refused(f"Refused {host}: it resolved to something that is not an IP address.")
            reason = blocked_reason(ip)
            if reason and (not allowed or ip in METADATA_ADDRESSES):
                own = ", and not the provider's own host" if self.own_origin else ""
                raise Refused(
                    f"Refused to {self.purpose} {host}:{port}: it is {reason} ({ip}){own} "
                    f"(add it to {self.setting} if it is trusted)."
                )


class GuardedResolver(AbstractResolver):
    """Resolves with the system resolver, then refuses the lookup if any address is off limits.

    aiohttp connects only to the addresses returned here, so the check and the connection use the
    same answer (no DNS-rebinding window between them).
    """

    def __init__(self, guard: HostGuard) -> None:
        self._guard = guard
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        self._guard.check_addresses(host, port, [r["host"] for r in results])
        return results

    async def close(self) -> None:
        await self._inner.close()


def guarded_transport(guard: HostGuard, max_connections: int = 8) -> AiohttpTransport:
    ssl_context = httpx.create_ssl_context(trust_env=False)

    def session() -> aiohttp.ClientSession:
        # Created lazily inside the running event loop (a session is bound to its loop).
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(guard), ssl=ssl_context, limit=max_connections, use_dns_cache=False
        )
        return aiohttp.ClientSession(connector=connector, trust_env=False)

    return AiohttpTransport(client=session, trust_env=False)


@dataclass(frozen=True)
class Downloaded:
    """A complete body in a temporary file (the caller deletes it)."""

    path: str
    size: int
    sha256: str
    header_content_type: str
    url: str  # redacted final URL


class SafeDownloader:
    """Downloads untrusted URLs into temp files. Use `async with SafeDownloader(guard, ...) as d:`."""

    def __init__(
        self,
        guard: HostGuard,
        *,
        max_bytes: int,
        deadline: float,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 8,
        temp_dir: str | None = None,
    ) -> None:
        self.guard = guard
        self.max_bytes = max_bytes
        self.deadline = deadline
        self.temp_dir = temp_dir
        self._transport = transport or guarded_transport(guard, max_connections)
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> SafeDownloader:
        read = min(self.deadline, 15.0)
        self._http = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(read, connect=min(read, 5.0)),
            follow_redirects=False,
            trust_env=False,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def download(self, request: httpx.Request) -> Downloaded:
        """Follow up to MAX_REDIRECTS redirects and stream the body to a temp file, all within the deadline."""
        try:
            async with asyncio.timeout(self.deadline):
                return await self._download(request)
        except TimeoutError:
            raise DownloadError(
                f"Downloading {redact(request.url)} did not finish within {self.deadline:g} s."
            ) from None
        except httpx.TimeoutException:
            raise DownloadError(f"{redact(request.url)} stopped answering (timed out).") from None
        except httpx.HTTPError as exc:
            raise DownloadError(f"Could not download {redact(request.url)}: {describe_failure(exc)}.") from None

    async def _download(self, request: httpx.Request) -> Downloaded:
        assert self._http is not None, "use `async with SafeDownloader(...)`"
        url = request.url
        for _hop in range(MAX_REDIRECTS + 1):
            self.guard.check_url(url)
            response = await self._http.send(self._hop_request(request, url), stream=True)
            try:
                if response.status_code in REDIRECT_CODES and response.headers.get("location"):
                    url = url.join(response.headers["location"])
                    continue
                if not response.is_success:
                    raise _status_error(response, url)
                return await self._save_body(response, url)
            finally:
                await response.aclose()
        raise DownloadError(f"{redact(request.url)} redirected more than {MAX_REDIRECTS} times.", permanent=True)

    def _hop_request(self, first: httpx.Request, url: httpx.URL) -> httpx.Request:
        # The auth headers download_request() added go to the provider's own origin, and only on the
        # first request: a redirect target (a signed storage link) is never sent the credential, even on
        # the same host; signed links refuse requests that carry one (docs/providers.md).
        if url == first.url and self.guard.is_own_origin(url):
            headers = httpx.Headers(first.headers)
        else:
            headers = httpx.Headers({"User-Agent": first.headers.get("user-agent", USER_AGENT)})
        headers.setdefault("User-Agent", USER_AGENT)
        return httpx.Request("GET", url, headers=headers)

    async def _save_body(self, response: httpx.Response, url: httpx.URL) -> Downloaded:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise self._too_big(url, f"{int(declared):,} bytes")
        fd, path = tempfile.mkstemp(prefix="ct-archive-", dir=self.temp_dir)
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self._too_big(url, "more than that")
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            os.unlink(path)
            raise
        content_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        return Downloaded(
            path=path, size=size, sha256=digest.hexdigest(), header_content_type=content_type, url=redact(url)
        )

    def _too_big(self, url: httpx.URL, what: str) -> DownloadError:
        return DownloadError(
            f"{redact(url)} is too large to archive ({what}; the limit is {self.max_bytes:,} bytes, "
            "COMFYTRACK_ARCHIVE_MAX_BYTES).",
            permanent=True,
        )


def _status_error(response: httpx.Response, url: httpx.URL) -> DownloadError:
    code = response.status_code
    transient = code in (408, 429) or code >= 500
    return DownloadError(f"{redact(url)} answered {code}.", status_code=code, permanent=not transient)
