"""Unit tests of the SSRF guard: the address classifier, host allowances and redirect handling."""

from __future__ import annotations

import asyncio
import ipaddress

import httpx
import pytest

from runs.safe_http import (
    DownloadError,
    GuardedResolver,
    HostGuard,
    Refused,
    SafeDownloader,
    blocked_reason,
    parse_allowance,
    redact,
)

BLOCKED = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "172.16.5.4",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.1.1",
    "100.64.0.1",
    "100.127.255.255",
    "0.0.0.0",  # noqa: S104 — an address under test, not a bind
    "0.1.2.3",
    "224.0.0.1",
    "233.252.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",
    "198.18.0.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "ff0e::1",
    "2001:db8::1",
    "fd00:ec2::254",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:100.64.0.1",
    "::ffff:0.0.0.0",
    "::127.0.0.1",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", BLOCKED)
def test_it_blocks_non_public_addresses(address):
    assert blocked_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_it_allows_public_addresses(address):
    assert blocked_reason(ipaddress.ip_address(address)) is None


def test_it_names_mapped_and_metadata_forms():
    assert blocked_reason(ipaddress.ip_address("::ffff:127.0.0.1")) == "a loopback address (IPv4-mapped)"
    assert blocked_reason(ipaddress.ip_address("169.254.169.254")) == "a cloud metadata address"


# -- the guard ----------------------------------------------------------------------------------


def guard_for(base_url: str | None, allowed=()) -> HostGuard:
    return HostGuard.for_base_url(base_url, allowed, purpose="fetch from", setting="TEST_ALLOW_PRIVATE_HOSTS")


def test_it_words_refusals_with_the_callers_purpose_and_setting():
    guard = HostGuard.for_base_url(None, purpose="send to", setting="COMFYTRACK_WEBHOOK_ALLOW_PRIVATE_HOSTS")
    with pytest.raises(Refused) as refused:
        guard.check_url(httpx.URL("http://10.0.0.5/hook"))
    assert refused.value.message == (
        "Refused to send to 10.0.0.5:80: it is a private address (10.0.0.5) "
        "(add it to COMFYTRACK_WEBHOOK_ALLOW_PRIVATE_HOSTS if it is trusted)."
    )
    with pytest.raises(Refused, match=r"^Refused to send to a ftp: URL"):
        guard.check_url(httpx.URL("ftp://example.com/x"))
    with pytest.raises(Refused, match=r"provider's own host \(add it to TEST_ALLOW_PRIVATE_HOSTS"):
        guard_for("https://api.example.com").check_addresses("db.internal", 5432, ["10.1.2.3"])


def test_it_allows_the_providers_own_private_host_and_port_only():
    guard = guard_for("http://192.168.1.20:8188")
    guard.check_addresses("192.168.1.20", 8188, ["192.168.1.20"])
    with pytest.raises(Refused):
        guard.check_addresses("192.168.1.20", 22, ["192.168.1.20"])
    with pytest.raises(Refused):
        guard.check_addresses("192.168.1.21", 8188, ["192.168.1.21"])


def test_it_refuses_metadata_even_for_an_allowed_host():
    guard = guard_for("http://metadata.internal", ["169.254.169.254"])
    with pytest.raises(Refused, match="metadata"):
        guard.check_addresses("metadata.internal", 80, ["169.254.169.254"])
    with pytest.raises(Refused, match="metadata"):
        guard.check_url(httpx.URL("http://169.254.169.254/latest/"))


def test_it_fails_closed_on_an_empty_or_mixed_dns_answer():
    guard = guard_for("https://api.example.com")
    with pytest.raises(Refused, match="no address"):
        guard.check_addresses("cdn.example.com", 443, [])
    with pytest.raises(Refused, match="private"):
        guard.check_addresses("cdn.example.com", 443, ["93.184.216.34", "10.1.2.3"])
    guard.check_addresses("cdn.example.com", 443, ["93.184.216.34"])


@pytest.mark.parametrize(
    "entry, expected",
    [
        ("gpu-box.lan", ("gpu-box.lan", None)),
        ("GPU-box.lan:8188", ("gpu-box.lan", 8188)),
        ("[::1]:8188", ("::1", 8188)),
        ("[fd00::5]", ("fd00::5", None)),
        ("fd00::5", ("fd00::5", None)),
    ],
)
def test_it_parses_allowances(entry, expected):
    assert parse_allowance(entry) == expected


def test_it_honours_allowances_from_settings():
    guard = guard_for("https://cloud.comfy.org", ["gpu-box.lan:8188", "[::1]"])
    guard.check_addresses("gpu-box.lan", 8188, ["10.0.0.5"])
    guard.check_addresses("::1", 9999, ["::1"])
    with pytest.raises(Refused):
        guard.check_addresses("gpu-box.lan", 8189, ["10.0.0.5"])


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://example.com/", "ftp://example.com/x", "http://[::1]/"])
def test_it_refuses_bad_urls(url):
    with pytest.raises(Refused):
        guard_for("https://api.example.com").check_url(httpx.URL(url))


def resolve(base_url: str, host: str, port: int) -> list:
    async def go():
        resolver = GuardedResolver(guard_for(base_url))  # needs a running loop
        try:
            return await resolver.resolve(host, port)
        finally:
            await resolver.close()

    return asyncio.run(go())


def test_the_resolver_refuses_a_name_pointing_at_loopback():
    with pytest.raises(Refused, match="loopback"):
        resolve("https://api.example.com", "localhost", 80)


def test_the_resolver_allows_the_providers_own_name():
    assert {r["host"] for r in resolve("http://localhost:8188", "localhost", 8188)} <= {"127.0.0.1", "::1"}


def test_it_redacts_query_strings_and_userinfo():
    assert redact("https://user:pw@bucket.s3.amazonaws.com/a/b.png?X-Amz-Signature=abc#f") == (
        "https://bucket.s3.amazonaws.com/a/b.png"
    )


# -- redirects through httpx.MockTransport -------------------------------------------------------

OWN = "https://cloud.comfy.org"
GCS = "https://storage.googleapis.com/comfy-outputs/x.png?X-Goog-Signature=deadbeef"


@pytest.fixture(autouse=True)
def downloads_in_tmp_path(tmp_path, monkeypatch):
    """The downloads these tests make land in the test's own directory, not in /tmp for good."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))


def download(handler, url: str = f"{OWN}/api/view?filename=x.png", *, max_bytes: int = 1_000_000):
    """Run one download against a MockTransport; returns (result or error, requests seen)."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    async def go():
        guard = guard_for(OWN)
        request = httpx.Request("GET", url, headers={"X-API-Key": "k-123", "Authorization": "Bearer k-123"})
        async with SafeDownloader(
            guard, max_bytes=max_bytes, deadline=5, transport=httpx.MockTransport(record)
        ) as downloader:
            try:
                return await downloader.download(request)
            except DownloadError as exc:
                return exc

    return asyncio.run(go()), seen


def test_it_strips_auth_when_a_redirect_leaves_the_providers_host(tmp_path):
    def handler(request):
        if request.url.host == "cloud.comfy.org":
            return httpx.Response(302, headers={"Location": GCS})
        return httpx.Response(200, content=b"PNGDATA")

    result, seen = download(handler)
    assert not isinstance(result, DownloadError)
    assert seen[0].headers["x-api-key"] == "k-123"
    assert seen[1].url.host == "storage.googleapis.com"
    assert "x-api-key" not in seen[1].headers and "authorization" not in seen[1].headers
    with open(result.path, "rb") as f:
        assert f.read() == b"PNGDATA"
    assert result.size == 7 and "deadbeef" not in result.url


def test_it_does_not_send_auth_over_a_downgraded_scheme():
    def handler(request):
        if request.url.scheme == "https":
            return httpx.Response(302, headers={"Location": "http://cloud.comfy.org/api/view?x=1"})
        return httpx.Response(200, content=b"ok")

    result, seen = download(handler)
    assert not isinstance(result, DownloadError)
    assert "x-api-key" not in seen[1].headers


def test_it_never_sends_auth_to_a_redirect_target_even_on_the_providers_host():
    def handler(request):
        if request.url.path == "/api/view":
            return httpx.Response(302, headers={"Location": "/files/x.png?expires=1&sig=abc"})
        return httpx.Response(200, content=b"ok")

    result, seen = download(handler)
    assert not isinstance(result, DownloadError)
    assert seen[0].headers["x-api-key"] == "k-123"
    assert seen[1].url.host == "cloud.comfy.org"
    assert "x-api-key" not in seen[1].headers and "authorization" not in seen[1].headers


def test_it_follows_at_most_three_redirects():
    result, seen = download(lambda request: httpx.Response(302, headers={"Location": GCS}))
    assert isinstance(result, DownloadError) and "more than 3" in result.message
    assert len(seen) == 4


@pytest.mark.parametrize(
    "location", ["http://169.254.169.254/latest/meta-data/", "http://[::ffff:10.0.0.1]/", "file:///etc/passwd"]
)
def test_it_refuses_redirects_to_private_addresses_before_sending(location):
    result, seen = download(lambda request: httpx.Response(302, headers={"Location": location}))
    assert isinstance(result, Refused)
    assert len(seen) == 1


def test_it_keeps_signed_queries_out_of_error_messages():
    result, _ = download(lambda request: httpx.Response(403), url=GCS)
    assert isinstance(result, DownloadError) and result.status_code == 403
    assert "deadbeef" not in result.message and "storage.googleapis.com" in result.message


def test_it_refuses_a_declared_length_over_the_cap():
    result, _ = download(lambda request: httpx.Response(200, content=b"x" * 2000), max_bytes=1000)
    assert isinstance(result, DownloadError) and result.permanent and "too large" in result.message
