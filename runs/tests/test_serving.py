"""Archived outputs can never run as HTML or script in our origin: the byte check at archive time
(runs.content), the serving decision (runs.serving) and the headers of every file response."""

from __future__ import annotations

import io
import json
import struct
import zlib

import pytest
from django.contrib.auth import get_user_model
from PIL import Image

from accounts.models import ApiKey, Membership
from providers.tests.shared import fixture
from runs.archive import archive_due_outputs
from runs.content import sniff
from runs.models import Run, RunOutput, Status
from runs.serving import FILE_CSP, OCTET_STREAM, decide
from runs.tests.archive_helpers import body, local_server, make_output, stub_client_registered

pytestmark = pytest.mark.django_db

HTML = b"<!doctype html><script>fetch('/settings/api-keys/new/', {method: 'POST'})</script>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>'
JS = b"fetch('/settings/api-keys/new/', {method: 'POST'});"


def png(size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def fake_png_header_then_html() -> bytes:
    """A PNG signature and a well-formed IHDR chunk, then a page: identifies as PNG, does not decode."""
    ihdr = struct.pack(">IIBBBBB", 8, 6, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + HTML


MEDIA_HEADS = {
    "video/mp4": b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + b"\x00" * 64,
    "video/quicktime": b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  " + b"\x00" * 64,
    "video/webm": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\x82\x84webm" + b"\x00" * 64,
    "audio/mpeg": b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 64,
    "audio/wav": b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 64,
    "audio/ogg": b"OggS\x00\x02" + b"\x00" * 22 + b"\x01vorbis" + b"\x00" * 64,
    "audio/flac": b"fLaC\x00\x00\x00\x22" + b"\x00" * 64,
}


def write(tmp_path, data: bytes, name: str = "out.bin") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


# -- the byte check ---------------------------------------------------------------------------------


def test_a_png_made_with_pillow_is_a_verified_image(tmp_path):
    sniffed = sniff(write(tmp_path, png((8, 6)), "a.png"))
    assert (sniffed.content_type, sniffed.verified, sniffed.width, sniffed.height) == ("image/png", True, 8, 6)


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (HTML, "evil.png"),
        (SVG, "evil.svg"),
        (JS, "evil.js"),
        (fake_png_header_then_html(), "half.png"),
        (b"GIF89a/*" + b"\x00" * 6 + b"*/=1;" + JS, "polyglot.gif"),  # the classic GIF/JavaScript polyglot
    ],
)
def test_html_svg_script_and_fake_images_are_never_verified(tmp_path, data, name):
    sniffed = sniff(write(tmp_path, data, name))
    assert not sniffed.verified
    assert not sniffed.content_type.startswith(("image/", "video/", "audio/"))
    assert decide(sniffed.content_type, sniffed.verified, name).content_type == OCTET_STREAM


def test_a_real_image_carrying_a_page_is_served_as_an_image_never_as_html(tmp_path):
    # A valid PNG with HTML after IEND: browsers decode it as PNG; with nosniff it can never be a page.
    sniffed = sniff(write(tmp_path, png() + HTML, "polyglot.png"))
    assert (sniffed.content_type, sniffed.verified) == ("image/png", True)
    assert decide(sniffed.content_type, sniffed.verified, "polyglot.html").content_type == "image/png"


@pytest.mark.parametrize(("content_type", "head"), list(MEDIA_HEADS.items()))
def test_video_and_audio_are_verified_by_their_magic_bytes(tmp_path, content_type, head):
    sniffed = sniff(write(tmp_path, head))
    assert (sniffed.content_type, sniffed.verified) == (content_type, True)


def test_a_heif_image_in_an_mp4_container_is_not_video(tmp_path):
    sniffed = sniff(write(tmp_path, b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64))
    assert not sniffed.verified


# -- the decision -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "verified", "inline"),
    [
        ("image/png", True, True),
        ("video/mp4", True, True),
        ("audio/mpeg", True, True),
        ("image/png", False, False),  # archived before the check existed, or named .png by the provider
        ("image/svg+xml", True, False),
        ("text/html", True, False),
        ("text/javascript", True, False),
        ("application/pdf", True, False),
        ("text/plain", True, False),
    ],
)
def test_only_verified_raster_video_and_audio_are_inline(content_type, verified, inline):
    served = decide(content_type, verified, "f")
    assert served.inline is inline
    assert served.content_type == (content_type if inline else OCTET_STREAM)
    assert served.disposition.startswith("inline" if inline else "attachment")
    assert not decide(content_type, verified, "f", download=True).inline


# -- file responses ---------------------------------------------------------------------------------


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.COMFYTRACK_ARCHIVE_ALLOW_PRIVATE_HOSTS = []
    with stub_client_registered():
        yield tmp_path


def archived(data: bytes, filename: str, kind: str = RunOutput.Kind.FILE, declared: str = "") -> RunOutput:
    """An output archived through the real archive, from a loopback server that declares `declared`."""
    path = f"/{filename}"
    with local_server({path: body(data, declared or "application/octet-stream")}) as server:
        output = make_output(server.root, f"{server.root}{path}", kind=kind, filename=filename)
        assert archive_due_outputs() == 1
    output.refresh_from_db()
    return output


def member_client(client, output: RunOutput):
    user = get_user_model().objects.create_user(f"m-{output.code.hex[:8]}", password="password")
    Membership.objects.create(organization=output.organization, user=user, role=Membership.Role.MEMBER)
    client.force_login(user)
    return client


def assert_safe_headers(response) -> None:
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == FILE_CSP
    assert "sandbox" in response["Content-Security-Policy"] and "script-src" not in response["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("data", "filename", "kind", "declared"),
    [
        (HTML, "evil.html", RunOutput.Kind.FILE, "text/html"),
        (JS, "evil.js", RunOutput.Kind.FILE, "text/javascript"),
        (SVG, "evil.svg", RunOutput.Kind.IMAGE, "image/svg+xml"),
        (HTML, "evil.png", RunOutput.Kind.IMAGE, "image/png"),
    ],
)
def test_planted_pages_and_scripts_are_only_ever_downloaded(client, media, data, filename, kind, declared):
    output = archived(data, filename, kind, declared)
    assert not output.content_verified and output.inline_kind == ""
    client = member_client(client, output)
    for url in (f"/outputs/{output.code}/file/", f"/api/v1/outputs/{output.code}/file"):
        response = client.get(url)
        assert response.status_code == 200
        assert response["Content-Type"] == OCTET_STREAM
        assert response["Content-Disposition"].startswith("attachment")
        assert_safe_headers(response)
        assert b"".join(response.streaming_content) == data  # nothing lost: the bytes download as they were
    assert client.get(f"/outputs/{output.code}/thumbnail/").status_code in (200, 404)


def test_a_verified_image_is_shown_inline_with_the_type_its_bytes_showed(client, media):
    output = archived(png((400, 300)), "photo.html", RunOutput.Kind.IMAGE, "text/html")
    assert (output.content_type, output.content_verified, output.inline_kind) == ("image/png", True, "image")
    client = member_client(client, output)
    for url in (f"/outputs/{output.code}/file/", f"/api/v1/outputs/{output.code}/file"):
        response = client.get(url)
        assert response["Content-Type"] == "image/png" and response["Content-Disposition"].startswith("inline")
        assert_safe_headers(response)
    thumbnail = client.get(f"/outputs/{output.code}/thumbnail/")
    assert thumbnail["Content-Type"] == "image/webp"
    assert_safe_headers(thumbnail)
    download = client.get(f"/outputs/{output.code}/file/?download=1")
    assert download["Content-Disposition"].startswith("attachment") and download["Content-Type"] == OCTET_STREAM


def test_outputs_archived_before_the_check_are_only_downloaded(client, media):
    output = archived(png(), "old.png", RunOutput.Kind.IMAGE, "image/png")
    RunOutput.objects.filter(pk=output.pk).update(content_verified=False)  # what the migration leaves them at
    response = member_client(client, output).get(f"/outputs/{output.code}/file/")
    assert response["Content-Type"] == OCTET_STREAM and response["Content-Disposition"].startswith("attachment")
    assert_safe_headers(response)


def test_the_run_page_and_gallery_link_unsafe_files_for_download_only(client, media):
    evil = archived(HTML, "evil.html", RunOutput.Kind.IMAGE, "text/html")
    client = member_client(client, evil)
    page = client.get(f"/runs/{evil.run.code}/").content.decode()
    assert f'href="/outputs/{evil.code}/file/?download=1">evil.html' in page
    assert f'href="/outputs/{evil.code}/file/"' not in page
    gallery = client.get("/gallery/").content.decode()
    assert f"/outputs/{evil.code}/file/" not in gallery and f"/outputs/{evil.code}/thumbnail/" not in gallery
    lightbox = client.get(f"/outputs/{evil.code}/").content.decode()
    assert f'/outputs/{evil.code}/file/"' not in lightbox and f"/outputs/{evil.code}/file/?download=1" in lightbox


def test_a_page_planted_through_the_comfydeploy_webhook_is_only_downloaded(client, media, org, make_provider):
    """The issue's second route: whoever holds the hook token names the output and serves its bytes."""
    with local_server({"/evil.html": body(HTML, "text/html")}) as server:
        provider = make_provider(org, base_url=server.root)
        token = provider.issue_webhook_token()
        payload = json.loads(json.dumps(fixture("comfydeploy/webhook_run_output.json")))
        run = Run.objects.create(
            organization=org, provider=provider, external_id=payload["run_id"], status=Status.RUNNING
        )
        image = payload["outputs"][0]["data"]["images"][0]
        image.update(url=f"{server.root}/evil.html", filename="evil.html")
        hook = client.post(
            f"/api/v1/hooks/comfydeploy/{provider.code}/{token}", json.dumps(payload), content_type="application/json"
        )
        assert hook.status_code == 200
        provider.base_url = server.root  # the archive may fetch from the provider's own (loopback) host
        assert archive_due_outputs() == 1
    output = run.outputs.get()
    assert output.filename == "evil.html" and not output.content_verified
    response = member_client(client, output).get(f"/outputs/{output.code}/file/")
    assert response["Content-Type"] == OCTET_STREAM and response["Content-Disposition"].startswith("attachment")
    assert_safe_headers(response)
    assert not ApiKey.objects.exists()


def test_verify_outputs_checks_what_was_archived_before_the_check(media):
    from io import StringIO

    from django.core.management import call_command

    image = archived(png(), "old.png", RunOutput.Kind.IMAGE, "image/png")
    page = archived(HTML, "old.html", RunOutput.Kind.FILE, "text/html")
    RunOutput.objects.filter(pk__in=[image.pk, page.pk]).update(content_verified=False, content_type="image/png")
    out = StringIO()
    call_command("verify_outputs", stdout=out)
    image.refresh_from_db()
    page.refresh_from_db()
    assert (image.content_type, image.content_verified, image.inline_kind) == ("image/png", True, "image")
    assert (page.content_type, page.content_verified, page.inline_kind) == ("text/plain", False, "")
    assert out.getvalue().strip() == "1 verified, 1 download only, 0 missing"
