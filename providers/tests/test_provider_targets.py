"""Provider base URLs: link-local and cloud-metadata targets are refused when connecting, private networks
and loopback stay allowed (self-hosted ComfyUI), and no message quotes what an internal page said."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from multidict import CIMultiDict

from comfytrack.net import AddressRefused, LinkLocalGuardResolver, link_local_reason, parse_ip
from providers.clients.base import ProviderError
from providers.clients.comfyui import ComfyUIClient
from providers.clients.transport import ProviderResponse
from providers.health import check_connection
from providers.models import Provider
from providers.tests.loopback import Request, Response, serve

SECRET_PAGE = "INTERNAL-SECRET-PAGE do-not-show"

REFUSED = [
    "169.254.169.254",
    "169.254.170.2",
    "169.254.0.1",
    "[fd00:ec2::254]",
    "[fe80::1]",
    "[::ffff:169.254.169.254]",
    "[::ffff:a9fe:a9fe]",
    "[::169.254.169.254]",
    "user:pw@169.254.169.254",
]


@pytest.mark.parametrize("host", REFUSED)
def test_it_refuses_link_local_and_metadata_base_urls(host: str) -> None:
    client = ComfyUIClient(f"http://{host}:8188")
    with pytest.raises(ProviderError) as caught:
        client.call(client.check)
    assert caught.value.permanent
    assert "was not sent" in caught.value.message
    assert "link-local" in caught.value.message or "metadata" in caught.value.message


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.1.20", "172.16.0.5", "::1", "fd12::1"])
def test_private_and_loopback_addresses_stay_allowed_for_providers(address: str) -> None:
    ip = parse_ip(address)
    assert ip is not None
    assert link_local_reason(ip) is None


def test_the_resolver_refuses_a_name_that_resolves_to_a_metadata_address(monkeypatch) -> None:
    """A DNS name pointing at the metadata service is refused where aiohttp resolves it (the one seam
    mocked: the system resolver's answer)."""

    async def metadata_answer(host, port=0, family=socket.AF_INET):
        return [{"hostname": host, "host": "169.254.169.254", "port": port, "family": family, "proto": 0, "flags": 0}]

    async def resolve() -> None:
        resolver = LinkLocalGuardResolver()
        monkeypatch.setattr(resolver._inner, "resolve", metadata_answer)
        try:
            await resolver.resolve("comfy.internal.example", 8188)
        finally:
            await resolver.close()

    with pytest.raises(AddressRefused, match="cloud metadata address"):
        asyncio.run(resolve())


@pytest.fixture
def internal_page() -> str:
    """A loopback server answering every path with a plain-text page, as an internal admin page might."""

    def page(request: Request) -> Response:
        return Response(500 if request.url.path.endswith("/queue") else 200, text=SECRET_PAGE)

    return serve(page)


@pytest.mark.django_db
def test_test_connection_never_echoes_an_internal_page(internal_page: str, org) -> None:
    provider = Provider.objects.create(organization=org, name="inside", kind="comfyui", base_url=internal_page)
    ok, message = check_connection(provider, None)
    assert not ok
    assert "INTERNAL" not in message
    assert "not valid JSON (a body of" in message


@pytest.mark.django_db
def test_the_test_connection_button_shows_no_body(internal_page: str, org, alice, client) -> None:
    provider = Provider.objects.create(organization=org, name="inside", kind="comfyui", base_url=internal_page)
    client.force_login(alice)
    response = client.post(reverse("provider-test", args=[provider.code]), follow=True)
    shown = " ".join(str(m) for m in get_messages(response.wsgi_request)) + response.content.decode()
    assert "inside" in shown
    assert "INTERNAL" not in shown


def test_a_json_error_field_is_quoted_short_and_escaped(internal_page: str) -> None:
    client = ComfyUIClient(internal_page)
    with pytest.raises(ProviderError) as caught:
        client.call(client.request, "GET", "/queue")  # the page answers 500 with plain text
    assert "INTERNAL" not in caught.value.message
    assert "answered 500: a body of" in caught.value.message


def test_a_json_error_field_is_cut_short_and_its_control_characters_escaped() -> None:
    client = ComfyUIClient("http://127.0.0.1:8188")
    detail = 'Run not found "x"\x00\x1b[31m' + "y" * 1000
    body = json.dumps({"detail": detail}).encode()
    response = ProviderResponse(404, CIMultiDict(), body, "GET", "http://127.0.0.1:8188/history/1")
    text = client.error_detail(response)
    assert text.startswith('Run not found \\"x\\"\\u0000\\u001b[31m')
    assert len(text) < 200
    assert text.endswith("…")
