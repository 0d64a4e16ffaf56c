"""Unit tests of the SSRF guard: the address classifier, host allowances and redirect handling."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
from http.server import BaseHTTPRequestHandler

import pytest
from yarl import URL

from comfytrack import safe_http
from comfytrack.net import BROKEN_PROTOCOL, COULD_NOT_CONNECT, USER_AGENT, AddressRefused
from comfytrack.safe_http import (
    DownloadError,
    GuardedResolver,
    HostGuard,
    SafeDownloader,
    Sent,
    blocked_reason,
    guarded_session,
    parse_allowance,
    redact,
)
from providers.tests.loopback import closed_port_url
from runs.tests.archive_helpers import body, local_server, redirect, stall


def status(code: int):
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(code)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return route


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
    with pytest.raises(AddressRefused) as refused:
        guard.check_url(URL("http://10.0.0.5/hook"))
    assert str(refused.value) == (
        "Refused to send to 10.0.0.5:80: it is a private address (10.0.0.5) "
        "(add it to COMFYTRACK_WEBHOOK_ALLOW_PRIVATE_HOSTS if it is trusted)."
    )
    with pytest.raises(AddressRefused, match=r"^Refused to send to a ftp: URL"):
        guard.check_url(URL("ftp://example.com/x"))
    with pytest.raises(AddressRefused, match=r"provider's own host \(add it to TEST_ALLOW_PRIVATE_HOSTS"):
        guard_for("https://api.example.com").check_addresses("db.internal", 5432, ["10.1.2.3"])


def test_it_allows_the_providers_own_private_host_and_port_only():
    guard = guard_for("http://192.168.1.20:8188")
    guard.check_addresses("192.168.1.20", 8188, ["192.168.1.20"])
    with pytest.raises(AddressRefused):
        guard.check_addresses("192.168.1.20", 22, ["192.168.1.20"])
    with pytest.raises(AddressRefused):
        guard.check_addresses("192.168.1.21", 8188, ["192.168.1.21"])


def test_it_refuses_metadata_even_for_an_allowed_host():
    guard = guard_for("http://metadata.internal", ["169.254.169.254"])
    with pytest.raises(AddressRefused, match="metadata"):
        guard.check_addresses("metadata.internal", 80, ["169.254.169.254"])
    with pytest.raises(AddressRefused, match="metadata"):
        guard.check_url(URL("http://169.254.169.254/latest/"))


def test_it_fails_closed_on_an_empty_or_mixed_dns_answer():
    guard = guard_for("https://api.example.com")
    with pytest.raises(AddressRefused, match="no address"):
        guard.check_addresses("cdn.example.com", 443, [])
    with pytest.raises(AddressRefused, match="private"):
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
    with pytest.raises(AddressRefused):
        guard.check_addresses("gpu-box.lan", 8189, ["10.0.0.5"])


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://example.com/", "ftp://example.com/x", "http://[::1]/"])
def test_it_refuses_bad_urls(url):
    with pytest.raises(AddressRefused):
        guard_for("https://api.example.com").check_url(URL(url))


def resolve(base_url: str, host: str, port: int) -> list:
    async def go():
        resolver = GuardedResolver(guard_for(base_url))  # needs a running loop
        try:
            return await resolver.resolve(host, port)
        finally:
            await resolver.close()

    return asyncio.run(go())


def test_the_resolver_refuses_a_name_pointing_at_loopback():
    with pytest.raises(AddressRefused, match="loopback"):
        resolve("https://api.example.com", "localhost", 80)


def test_the_resolver_allows_the_providers_own_name():
    assert {r["host"] for r in resolve("http://localhost:8188", "localhost", 8188)} <= {"127.0.0.1", "::1"}


def test_it_redacts_query_strings_and_userinfo():
    assert redact("https://user:pw@bucket.s3.amazonaws.com/a/b.png?X-Amz-Signature=abc#f") == (
        "https://bucket.s3.amazonaws.com/a/b.png"
    )


# -- downloads over loopback: redirects, auth, limits ------------------------------------------------
# The provider's own origin is http://localhost:<port>; "storage" is another server, reached as
# http://127.0.0.1:<port> (another origin) and allow-listed, as a private host must be.

KEY_HEADERS = {"X-API-Key": "k-123", "Authorization": "Bearer k-123"}


@pytest.fixture(autouse=True)
def downloads_in_tmp_path(tmp_path, monkeypatch):
    """The downloads these tests make land in the test's own directory, not in /tmp for good."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))


@pytest.fixture
def own():
    with local_server({}) as server:
        yield server


@pytest.fixture
def storage():
    with local_server({}) as server:
        yield server


def own_url(server, path: str = "/api/view?filename=x.png") -> str:
    return f"http://localhost:{server.port}{path}"


def download(own, storage, url: str, *, max_bytes: int = 1_000_000, own_scheme: str = "http"):
    """Run one download with the provider's auth headers; returns the result or the DownloadError."""

    async def go():
        guard = guard_for(f"{own_scheme}://localhost:{own.port}", [f"127.0.0.1:{storage.port}"])
        async with SafeDownloader(guard, max_bytes=max_bytes, deadline=5) as downloader:
            try:
                return await downloader.download(url, KEY_HEADERS)
            except DownloadError as exc:
                return exc

    return asyncio.run(go())


def test_it_strips_auth_when_a_redirect_leaves_the_providers_host(own, storage, tmp_path):
    own.routes["/api/view"] = redirect(f"{storage.root}/comfy-outputs/x.png?X-Goog-Signature=deadbeef")
    storage.routes["/comfy-outputs/x.png"] = body(b"PNGDATA", "image/png")
    result = download(own, storage, own_url(own))
    assert not isinstance(result, DownloadError), result
    assert own.hits[0][1]["x-api-key"] == "k-123" and own.hits[0][1]["authorization"] == "Bearer k-123"
    assert own.hits[0][1]["user-agent"].startswith("comfytrack/")
    (sent,) = storage.hits
    assert "x-api-key" not in sent[1] and "authorization" not in sent[1]
    assert sent[1]["user-agent"].startswith("comfytrack/")
    with open(result.path, "rb") as f:
        assert f.read() == b"PNGDATA"
    assert result.size == 7 and result.header_content_type == "image/png"
    assert "deadbeef" not in result.url and result.url == f"{storage.root}/comfy-outputs/x.png"


def test_it_sends_auth_only_over_the_providers_own_scheme(own, storage):
    # The provider's base URL is https; the same host and port over plain http is another origin.
    own.routes["/api/view"] = body(b"ok")
    result = download(own, storage, own_url(own), own_scheme="https")
    assert not isinstance(result, DownloadError), result
    assert "x-api-key" not in own.hits[0][1] and "authorization" not in own.hits[0][1]


def test_it_never_sends_auth_to_a_redirect_target_even_on_the_providers_host(own, storage):
    own.routes["/api/view"] = redirect("/files/x.png?expires=1&sig=abc")
    own.routes["/files/x.png"] = body(b"ok")
    result = download(own, storage, own_url(own))
    assert not isinstance(result, DownloadError), result
    assert [path for path, _ in own.hits] == ["/api/view", "/files/x.png"]
    assert own.hits[0][1]["x-api-key"] == "k-123"
    assert "x-api-key" not in own.hits[1][1] and "authorization" not in own.hits[1][1]


def test_it_follows_at_most_three_redirects(own, storage):
    storage.routes["/loop"] = redirect(f"{storage.root}/loop?X-Goog-Signature=deadbeef")
    result = download(own, storage, f"{storage.root}/loop")
    assert isinstance(result, DownloadError) and "more than 3" in result.message and result.permanent
    assert len(storage.hits) == 4


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/",
        "file:///etc/passwd",
        # A name: refused where it resolves (localhost is private, and this port is not the provider's).
        "http://localhost:1/x",
    ],
)
def test_it_refuses_redirects_to_private_addresses_before_sending(own, storage, location):
    own.routes["/api/view"] = redirect(location)
    result = download(own, storage, own_url(own))
    assert isinstance(result, DownloadError) and result.permanent and result.message.startswith("Refused"), result
    assert len(own.hits) == 1


def test_it_keeps_signed_queries_out_of_error_messages(own, storage):
    storage.routes["/comfy-outputs/x.png"] = status(403)
    result = download(own, storage, f"{storage.root}/comfy-outputs/x.png?X-Goog-Signature=deadbeef")
    assert isinstance(result, DownloadError) and result.status_code == 403 and result.permanent
    assert result.message == f"{storage.root}/comfy-outputs/x.png answered 403."


def test_a_5xx_is_worth_another_try(own, storage):
    own.routes["/api/view"] = status(503)
    result = download(own, storage, own_url(own))
    assert isinstance(result, DownloadError) and result.status_code == 503 and not result.permanent


def test_it_refuses_a_declared_length_over_the_cap(own, storage, tmp_path):
    own.routes["/api/view"] = body(b"x" * 2000)
    result = download(own, storage, own_url(own), max_bytes=1000)
    assert isinstance(result, DownloadError) and result.permanent and "too large" in result.message
    assert "2,000 bytes" in result.message
    assert list(tmp_path.iterdir()) == []


def test_it_stops_reading_a_body_without_a_length_at_the_cap(own, storage, tmp_path):
    own.routes["/api/view"] = body(b"x" * 300_000, length=False)
    result = download(own, storage, own_url(own), max_bytes=100_000)
    assert isinstance(result, DownloadError) and result.permanent and "more than that" in result.message
    assert list(tmp_path.iterdir()) == []


def test_it_words_a_refused_connection():
    url = closed_port_url()

    async def go():
        async with SafeDownloader(guard_for(url), max_bytes=1000, deadline=5) as downloader:
            await downloader.download(f"{url}/x.png?sig=secret")

    with pytest.raises(DownloadError) as caught:
        asyncio.run(go())
    assert caught.value.message == f"Could not download {url}/x.png: {COULD_NOT_CONNECT}."
    assert not caught.value.permanent


def test_it_words_a_server_that_stops_sending(own, storage, tmp_path):
    own.routes["/api/view"] = stall(3, after_headers=True)

    async def go():
        guard = guard_for(f"http://localhost:{own.port}")
        async with SafeDownloader(guard, max_bytes=1_000_000, deadline=5, read_timeout=0.3) as downloader:
            await downloader.download(own_url(own))

    with pytest.raises(DownloadError) as caught:
        asyncio.run(go())
    assert caught.value.message == f"http://localhost:{own.port}/api/view stopped answering (timed out)."
    assert list(tmp_path.iterdir()) == []


def test_it_words_a_body_cut_short(own, storage, tmp_path):
    own.routes["/api/view"] = stall(0, after_headers=True)  # 10 of the 100,000 bytes it announced, then closes
    result = download(own, storage, own_url(own))
    assert isinstance(result, DownloadError) and not result.permanent
    assert result.message == f"Could not download http://localhost:{own.port}/api/view: {BROKEN_PROTOCOL}."
    assert list(tmp_path.iterdir()) == []


def test_it_hashes_what_it_saved(own, storage):
    data = bytes(range(256)) * 1000
    own.routes["/api/view"] = body(data, length=False)
    result = download(own, storage, own_url(own))
    assert not isinstance(result, DownloadError), result
    assert result.sha256 == hashlib.sha256(data).hexdigest() and result.size == len(data)


# -- the one guarded POST (webhook deliveries, alert posts) ---------------------------------------------


def answer(code: int, data: bytes = b"", headers: dict[str, str] | None = None):
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(code)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return route


def post(
    url: str, *, allowed=("127.0.0.1",), timeout: float = 5, excerpt_bytes: int = 1000, headers: dict | None = None
) -> Sent:
    async def go() -> Sent:
        guard = HostGuard.for_base_url(None, allowed, purpose="send to", setting="TEST_ALLOW_PRIVATE_HOSTS")
        async with guarded_session(guard, timeout=timeout) as client:
            return await safe_http.post(
                client,
                guard,
                url,
                b'{"hello":"world"}',
                headers={"Content-Type": "application/json", "webhook-id": "msg_1", **(headers or {})},
                timeout=timeout,
                excerpt_bytes=excerpt_bytes,
            )

    return asyncio.run(go())


def test_a_post_sends_the_body_the_callers_headers_and_our_user_agent(own):
    own.routes["/hook"] = answer(204)
    sent = post(f"{own.root}/hook")
    assert sent.ok and sent.error == "" and sent.status_code == 204 and not sent.permanent
    assert own.bodies == [b'{"hello":"world"}']
    [(path, headers)] = own.hits
    assert path == "/hook" and headers["webhook-id"] == "msg_1" and headers["content-type"] == "application/json"
    assert headers["user-agent"] == USER_AGENT


def test_a_post_keeps_the_start_of_the_answer(own):
    own.routes["/hook"] = answer(400, b"no such channel" + b"x" * 5000)
    sent = post(f"{own.root}/hook?token=secret", excerpt_bytes=15)
    assert not sent.ok and sent.status_code == 400 and sent.excerpt == "no such channel"
    assert sent.error == f"{own.root}/hook answered 400." and "secret" not in sent.error


@pytest.mark.parametrize(("code", "permanent"), [(404, True), (410, True), (408, False), (500, False), (502, False)])
def test_a_post_tells_a_refusal_worth_retrying_from_one_that_is_not(own, code, permanent):
    own.routes["/hook"] = answer(code)
    sent = post(f"{own.root}/hook")
    assert not sent.ok and sent.status_code == code and sent.permanent is permanent and sent.retry_after is None


@pytest.mark.parametrize("code", [429, 503])
def test_a_post_reads_retry_after_when_throttled(own, code):
    own.routes["/hook"] = answer(code, headers={"Retry-After": "42"})
    sent = post(f"{own.root}/hook")
    assert not sent.ok and not sent.permanent and sent.retry_after == 42


def test_a_post_does_not_follow_a_redirect(own):
    own.routes["/hook"] = redirect(f"{own.root}/elsewhere", status=307)
    own.routes["/elsewhere"] = answer(200)
    sent = post(f"{own.root}/hook")
    assert [path for path, _ in own.hits] == ["/hook"]
    assert sent.status_code == 307 and sent.error == f"{own.root}/hook answered 307." and sent.permanent


def test_a_post_to_a_refused_address_sends_nothing(own):
    sent = post(f"{own.root}/hook", allowed=())
    assert own.hits == [] and sent.permanent and sent.status_code is None
    assert sent.error.startswith(f"Refused to send to 127.0.0.1:{own.port}: it is a loopback address")


@pytest.mark.parametrize("url", ["ftp://example.com/x", "http://", "http://[::1/x"])
def test_a_post_to_a_url_that_cannot_be_sent_to_is_permanent(url):
    sent = post(url)
    assert not sent.ok and sent.permanent and sent.status_code is None and sent.error


def test_a_post_words_a_refused_connection():
    url = closed_port_url()
    sent = post(f"{url}/hook?sig=secret")
    assert sent.error == f"Could not send to {url}/hook: {COULD_NOT_CONNECT}." and not sent.permanent


def test_a_post_gives_up_on_a_target_that_does_not_answer_in_time(own):
    own.routes["/hook"] = stall(3)
    sent = post(f"{own.root}/hook", timeout=1)
    assert sent.error == f"No answer from {own.root}/hook within 1 s." and not sent.permanent
    assert 1000 <= sent.latency_ms < 3000


def test_it_can_leave_the_path_out_where_it_may_be_the_secret():
    assert redact("https://hooks.slack.com/services/T0/B0/secret?x=1", keep_path=False) == "https://hooks.slack.com/…"


def test_an_unexpected_failure_logs_the_targets_host_not_its_path(own, caplog):
    own.routes["/services/T0/B0/secret"] = answer(204)
    sent = post(f"{own.root}/services/T0/B0/secret", headers={"X-Broken": 1})  # not a header value aiohttp can write
    assert sent.error == "Unexpected error: TypeError." and not sent.ok
    assert "failed unexpectedly" in caplog.text and "secret" not in caplog.text
