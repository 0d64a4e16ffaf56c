"""Fetching untrusted URLs without becoming an SSRF proxy: output downloads (`SafeDownloader`), and
webhook deliveries and alert posts (`post`, one guarded POST for both, over `guarded_session`).

Output URLs come from provider responses, so a hostile or compromised provider could point us at
our own network (the cloud metadata service, a database admin page on localhost, …). Defences:

1. Only http(s), at most `MAX_REDIRECTS` redirects, followed here, each hop checked before it is sent
   (webhook and alert sends follow none).
2. Every address a host name resolves to is checked *inside the connector* (`GuardedResolver`), so
   aiohttp connects to exactly the addresses we validated: no second DNS lookup to rebind.
   aiohttp skips the resolver for IP literals, which `HostGuard.check_url` checks up front.
3. Private, loopback, link-local, multicast, reserved, CGNAT and unspecified addresses (also in
   IPv4-mapped/compatible IPv6 form) are refused, unless host:port is the provider's own base URL
   (self-hosted ComfyUI on a LAN is normal) or allow-listed by the caller's setting
   (COMFYTRACK_ARCHIVE_ALLOW_PRIVATE_HOSTS for downloads). Cloud metadata addresses are refused even then.
4. Auth headers only go to the provider's own origin, on the first request, never to a redirect
   target: Comfy Cloud's /api/view answers 302 to a signed URL, which refuses a request carrying the
   API key even when it is on the same host.
5. A size cap (streamed, checked against Content-Length first), a total deadline, trust_env=False,
   certifi's CA roots.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDict
from yarl import URL

from comfytrack.net import (
    COULD_NOT_CONNECT,
    METADATA_ADDRESSES,
    NOT_HTTP,
    USER_AGENT,
    AddressRefused,
    blocked_reason,
    describe_failure,
    parse_ip,
    parse_retry_after,
    ssl_context,
)

logger = logging.getLogger("comfytrack.safe_http")

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


def redact(url: URL | str, keep_path: bool = True) -> str:
    """A URL safe for messages and logs: no userinfo, query or fragment (signed URLs carry credentials).
    `keep_path=False` for operators' logs of webhook and alert targets, whose path may be their secret
    (a Slack or Discord incoming webhook)."""
    try:
        url = URL(str(url))
    except ValueError:
        return "(a URL that cannot be parsed)"
    port = f":{url.explicit_port}" if url.explicit_port is not None and not url.is_default_port() else ""
    host = url.host or ""
    host = f"[{host}]" if ":" in host else host
    return f"{url.scheme}://{host}{port}{url.path if keep_path else '/…'}"


def _origin(url: URL) -> tuple[str, str, int]:
    return url.scheme, (url.host or "").lower(), url.port or DEFAULT_PORTS.get(url.scheme, 0)


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
        own = _origin(URL(base_url)) if base_url else None
        allowances = tuple(parse_allowance(a) for a in allowed if a.strip())
        return cls(purpose=purpose, setting=setting, own_origin=own, allowed=allowances)

    def is_own_origin(self, url: URL) -> bool:
        return self.own_origin is not None and _origin(url) == self.own_origin

    def may_be_private(self, host: str, port: int) -> bool:
        host = host.strip("[]").lower()
        if self.own_origin and (host, port) == self.own_origin[1:]:
            return True
        return any(host == h and (p is None or p == port) for h, p in self.allowed)

    def check_url(self, url: URL) -> None:
        """Before sending: scheme, host present, and IP literals (aiohttp never resolves those)."""
        if url.scheme not in DEFAULT_PORTS:
            raise AddressRefused(
                f"Refused to {self.purpose} a {url.scheme or 'relative'}: URL; only http and https are allowed."
            )
        if not url.host:
            raise AddressRefused(f"Refused to {self.purpose} a URL without a host.")
        ip = parse_ip(url.host)
        if ip is not None:
            self.check_addresses(url.host, url.port or DEFAULT_PORTS[url.scheme], [str(ip)])

    def check_addresses(self, host: str, port: int, addresses: Iterable[str]) -> None:
        """Refuse if any address is not public (fail closed: an empty answer is refused too)."""
        addresses = list(addresses)
        if not addresses:
            raise AddressRefused(f"Refused {host}: its name resolved to no address.")
        allowed = self.may_be_private(host, port)
        for address in addresses:
            ip = parse_ip(address)
            if ip is None:
                raise AddressRefused(f"Refused {host}: it resolved to something that is not an IP address.")
            reason = blocked_reason(ip)
            if reason and (not allowed or ip in METADATA_ADDRESSES):
                own = ", and not the provider's own host" if self.own_origin else ""
                raise AddressRefused(
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


CONNECT_TIMEOUT = 5.0


def guarded_session(guard: HostGuard, *, timeout: float, max_connections: int = 8) -> aiohttp.ClientSession:
    """The aiohttp session for untrusted URLs (output downloads, webhook and alert sends), made inside the
    running event loop (a session is bound to its loop); the caller closes it.

    Names resolve through `GuardedResolver` (IP literals are the caller's `guard.check_url`), redirects
    are the caller's to follow or not (pass allow_redirects=False), a stray HTTP(S)_PROXY is ignored,
    certificates are checked against certifi's roots. Connecting (pool wait included) and every read
    must each progress within `timeout`; the caller bounds the whole exchange.
    """
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(guard), ssl=ssl_context(), limit=max_connections, use_dns_cache=False
    )
    connect = min(timeout, CONNECT_TIMEOUT)
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": USER_AGENT},
        timeout=aiohttp.ClientTimeout(total=None, connect=timeout + connect, sock_connect=connect, sock_read=timeout),
        trust_env=False,
        raise_for_status=False,
    )


def worth_retrying(status_code: int) -> bool:
    """Whether an answer with this (non-2xx) status may succeed later: a timeout, throttling or a server
    error is; any other refusal (4xx, a redirect we do not follow) will be the same next time."""
    return status_code in (408, 429) or status_code >= 500


@dataclass(frozen=True)
class Sent:
    """What one guarded POST came to. `error` is "" when the target answered 2xx, else one sentence a person
    can act on (never with the URL's query string). `permanent`: trying again will not help (refused by the
    guard, a URL that cannot be sent to, a 4xx). `retry_after`: seconds the target asked us to wait."""

    error: str = ""
    status_code: int | None = None
    excerpt: str = ""  # the start of the answer's body, as text (shown, never trusted)
    latency_ms: int = 0
    permanent: bool = False
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return not self.error


async def post(
    client: aiohttp.ClientSession,
    guard: HostGuard,
    url: str,
    body: bytes,
    *,
    headers: Mapping[str, str],
    timeout: float,
    excerpt_bytes: int = 1000,
) -> Sent:
    """POST `body` to an untrusted `url` through a `guarded_session` made with the same `guard`: the
    address checked, no redirect followed (a 3xx is the target's answer), the whole exchange within
    `timeout`, at most `excerpt_bytes` of the answer read. Never raises: every failure is a `Sent`."""
    started = time.monotonic()
    where = f"{guard.purpose} {redact(url)}"
    try:
        target = URL(url)
        guard.check_url(target)
        async with asyncio.timeout(timeout):
            async with client.post(target, data=body, headers=headers, allow_redirects=False) as response:
                excerpt = (await read_excerpt(response, excerpt_bytes)).decode("utf-8", "replace")
    except AddressRefused as exc:
        outcome = Sent(str(exc), permanent=True)
    except aiohttp.ConnectionTimeoutError:
        # No connection within its part of the timeout: the target was never reached.
        outcome = Sent(f"Could not {where}: {COULD_NOT_CONNECT}.")
    except TimeoutError:
        outcome = Sent(f"No answer from {redact(url)} within {timeout:g} s.")
    except aiohttp.ClientError as exc:
        outcome = Sent(f"Could not {where}: {describe_failure(exc)}.")
    except ValueError:  # yarl: a URL it cannot parse
        outcome = Sent(f"Could not {where}: {NOT_HTTP}.", permanent=True)
    except Exception as exc:  # one bad target never breaks a batch of sends
        logger.exception("POST to %s failed unexpectedly", redact(url, keep_path=False))
        outcome = Sent(f"Unexpected error: {type(exc).__name__}.")
    else:
        outcome = _answered(response, redact(url), excerpt)
    return replace(outcome, latency_ms=int((time.monotonic() - started) * 1000))


def _answered(response: aiohttp.ClientResponse, where: str, excerpt: str) -> Sent:
    code = response.status
    if 200 <= code < 300:
        return Sent(status_code=code, excerpt=excerpt)
    return Sent(
        f"{where} answered {code}.",
        status_code=code,
        excerpt=excerpt,
        permanent=not worth_retrying(code),
        retry_after=parse_retry_after(response.headers.get("retry-after")) if code in (429, 503) else None,
    )


async def read_excerpt(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most the first `limit` bytes of a body (an endpoint's answer is shown, never trusted)."""
    data = bytearray()
    async for chunk in response.content.iter_any():
        data += chunk
        if len(data) >= limit:
            break
    return bytes(data[:limit])


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
        read_timeout: float = 15.0,
        max_connections: int = 8,
        temp_dir: str | None = None,
    ) -> None:
        self.guard = guard
        self.max_bytes = max_bytes
        self.deadline = deadline
        # Connecting and every read must progress within this (a stalled server fails before the deadline).
        self.read_timeout = min(deadline, read_timeout)
        self.temp_dir = temp_dir
        self.max_connections = max_connections
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SafeDownloader:
        self._http = guarded_session(self.guard, timeout=self.read_timeout, max_connections=self.max_connections)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def download(self, url: str, headers: Mapping[str, str] | None = None) -> Downloaded:
        """Follow up to MAX_REDIRECTS redirects and stream the body to a temp file, all within the deadline.
        `headers` (a provider's auth) go to the provider's own origin on the first request only."""
        deadline = asyncio.timeout(self.deadline)
        try:
            async with deadline:
                return await self._download(URL(url), headers or {})
        except AddressRefused as exc:  # by the guard: this URL (or a redirect's) will be refused again
            raise DownloadError(str(exc), permanent=True) from None
        except TimeoutError:
            if deadline.expired():
                raise DownloadError(f"Downloading {redact(url)} did not finish within {self.deadline:g} s.") from None
            # aiohttp's own: connecting or a read made no progress within its timeout.
            raise DownloadError(f"{redact(url)} stopped answering (timed out).") from None
        except aiohttp.ClientError as exc:
            raise DownloadError(f"Could not download {redact(url)}: {describe_failure(exc)}.") from None
        except ValueError:  # yarl: a URL (or a redirect's Location) it cannot parse
            raise DownloadError(f"Could not download {redact(url)}: {NOT_HTTP}.", permanent=True) from None

    async def _download(self, first: URL, headers: Mapping[str, str]) -> Downloaded:
        assert self._http is not None, "use `async with SafeDownloader(...)`"
        url = first
        for hop in range(MAX_REDIRECTS + 1):
            self.guard.check_url(url)
            hop_headers = self._hop_headers(hop, url, headers)
            async with self._http.get(url, headers=hop_headers, allow_redirects=False) as response:
                location = response.headers.get("location")
                if response.status in REDIRECT_CODES and location:
                    url = url.join(URL(location))
                    continue
                if not 200 <= response.status < 300:
                    raise _status_error(response.status, url)
                return await self._save_body(response, url)
        raise DownloadError(f"{redact(first)} redirected more than {MAX_REDIRECTS} times.", permanent=True)

    def _hop_headers(self, hop: int, url: URL, headers: Mapping[str, str]) -> CIMultiDict[str]:
        # The auth headers download_request() added go to the provider's own origin, and only on the
        # first request: a redirect target (a signed storage link) is never sent the credential, even on
        # the same host; signed links refuse requests that carry one (docs/providers.md).
        given: CIMultiDict[str] = CIMultiDict(headers)
        if hop == 0 and self.guard.is_own_origin(url):
            sent = given
        else:
            sent = CIMultiDict({"User-Agent": given.get("User-Agent", USER_AGENT)})
        sent.setdefault("User-Agent", USER_AGENT)
        return sent

    async def _save_body(self, response: aiohttp.ClientResponse, url: URL) -> Downloaded:
        declared = response.content_length
        if declared is not None and declared > self.max_bytes:
            raise self._too_big(url, f"{declared:,} bytes")
        fd, path = tempfile.mkstemp(prefix="ct-archive-", dir=self.temp_dir)
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in response.content.iter_any():
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

    def _too_big(self, url: URL, what: str) -> DownloadError:
        return DownloadError(
            f"{redact(url)} is too large to archive ({what}; the limit is {self.max_bytes:,} bytes, "
            "COMFYTRACK_ARCHIVE_MAX_BYTES).",
            permanent=True,
        )


def _status_error(code: int, url: URL) -> DownloadError:
    return DownloadError(f"{redact(url)} answered {code}.", status_code=code, permanent=not worth_retrying(code))
