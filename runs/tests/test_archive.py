"""The output archive end to end over real loopback HTTP (the fake provider and tiny local servers)."""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from PIL import Image
from yarl import URL

from providers.fake.files import output_seed
from providers.fake.png import png_bytes
from runs import archive
from runs.archive import EXPIRED_GIVE_UP_AFTER, archive_due_outputs, claim_due_outputs, download_batch, store_result
from runs.models import RunOutput
from runs.sync import sync_due_runs
from runs.tests.archive_helpers import (
    TOKEN,
    body,
    fake_file_url,
    local_server,
    make_output,
    png_of_size,
    redirect,
    stall,
    stub_client_registered,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path, monkeypatch):
    """Temp MEDIA_ROOT and temp dir, so tests can prove nothing (not even a partial file) is left behind."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.COMFYTRACK_ARCHIVE_ALLOW_PRIVATE_HOSTS = []
    settings.COMFYTRACK_ARCHIVE_TIMEOUT = 10
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    with stub_client_registered():
        yield tmp_path


def stored_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "media").rglob("*") if p.is_file()]


def temp_files(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "tmp").iterdir())


def in_future(seconds: int = 3600) -> int:
    return int(time.time()) + seconds


def later(days: int = 1):
    return timezone.now() + timedelta(days=days)


# -- success ------------------------------------------------------------------------------------


def test_it_archives_a_png_from_the_fake_provider(fake, media):
    url = fake_file_url(fake.root, "comfyui", "p-1", "ComfyUI_00001_.png", in_future())
    # The provider's filename is hostile; it must not decide where the file lands.
    output = make_output(fake.base_url("comfyui"), url, filename="../../../etc/cron.d/evil.png")

    assert archive_due_outputs() == 1

    output.refresh_from_db()
    expected = png_bytes(output_seed("comfyui", "p-1", "ComfyUI_00001_.png"))
    assert output.file.read() == expected
    assert output.sha256 == hashlib.sha256(expected).hexdigest()
    assert output.size_bytes == len(expected)
    assert (output.width, output.height) == (64, 64)
    assert output.content_type == "image/png"
    assert output.archived is not None and output.archive_error == "" and output.next_archive_after is None
    assert output.file.name is not None
    assert output.file.name.startswith("outputs/") and output.file.name.endswith(f"/{output.code}.png")
    assert ".." not in output.file.name and "evil" not in output.file.name
    with Image.open(output.thumbnail.path) as thumb:
        assert thumb.format == "WEBP" and max(thumb.size) <= 320
    assert temp_files(media) == []


def test_signed_output_links_stay_out_of_the_logs(fake, media, caplog):
    # A presigned link is a bearer capability until it expires: no log line of ours or a library's may print it.
    url = fake_file_url(fake.root, "comfyui", "p-1", "ComfyUI_00001_.png", in_future())
    make_output(fake.base_url("comfyui"), url)
    caplog.set_level(logging.INFO)
    assert archive_due_outputs() == 1
    signature = URL(url).query["sig"]
    assert signature and signature not in caplog.text


def test_it_makes_a_thumbnail_of_at_most_320_px(media):
    big = png_of_size(1000, 500)
    with local_server({"/big.png": body(big, "image/png")}) as server:
        output = make_output(server.root, f"{server.root}/big.png")
        assert archive_due_outputs() == 1
    output.refresh_from_db()
    assert (output.width, output.height) == (1000, 500)
    with Image.open(output.thumbnail.path) as thumb:
        assert thumb.size == (320, 160)


def test_it_sends_auth_to_the_own_host_only(settings):
    png = png_of_size(10, 10)
    with local_server({"/file.png": body(png, "image/png")}) as cdn:
        # The provider's /view answers 302 to a "CDN" on another (explicitly allowed) host.
        settings.COMFYTRACK_ARCHIVE_ALLOW_PRIVATE_HOSTS = [f"localhost:{cdn.port}"]
        with local_server({"/view": redirect(f"http://localhost:{cdn.port}/file.png?sig=abc")}) as own:
            output = make_output(own.root, f"{own.root}/view?filename=x.png")
            assert archive_due_outputs() == 1
    assert own.hits[0][1]["authorization"] == f"Bearer {TOKEN}"
    assert "authorization" not in cdn.hits[0][1]
    output.refresh_from_db()
    assert output.file.read() == png


def test_it_archives_a_non_image_without_thumbnail(media):
    # The header claims PNG; the bytes are text. The bytes win.
    with local_server({"/out.png": body(b"a prompt, saved as text\n", "image/png")}) as server:
        output = make_output(server.root, f"{server.root}/out.png", kind=RunOutput.Kind.TEXT)
        assert archive_due_outputs() == 1
    output.refresh_from_db()
    assert output.content_type == "text/plain"
    assert output.file.name is not None and output.file.name.endswith(".txt")
    assert not output.thumbnail and output.width is None and output.height is None
    assert len(stored_files(media)) == 1


# -- failures ------------------------------------------------------------------------------------


def test_it_gives_up_on_an_expired_link_after_a_few_attempts(fake):
    expired = int(time.time()) - 60
    url = fake_file_url(fake.root, "comfyui", "p-2", "old.png", expired)
    output = make_output(fake.base_url("comfyui"), url, expires=timezone.now() - timedelta(minutes=1))

    assert archive_due_outputs() == 0
    output.refresh_from_db()
    assert "expired before it could be archived" in output.archive_error
    assert "sig=" not in output.archive_error and "expires=" not in output.archive_error
    assert output.archive_attempts == 1
    assert output.next_archive_after is not None
    assert output.next_archive_after > timezone.now() + timedelta(seconds=20)  # backed off, not hammered
    assert archive_due_outputs() == 0  # not due yet
    assert RunOutput.objects.get(pk=output.pk).archive_attempts == 1

    for _ in range(EXPIRED_GIVE_UP_AFTER - 1):
        assert archive_due_outputs(now=later()) == 0
    output.refresh_from_db()
    assert output.archive_attempts == EXPIRED_GIVE_UP_AFTER
    assert output.next_archive_after is None and output.archived is None
    assert archive_due_outputs(now=later(30)) == 0
    assert RunOutput.objects.get(pk=output.pk).archive_attempts == EXPIRED_GIVE_UP_AFTER


def test_it_refuses_a_redirect_chain_to_a_private_address(settings, media):
    with local_server({"/secret": body(b"internal admin page")}) as internal:
        routes = {"/start": redirect("/hop"), "/hop": redirect(f"http://localhost:{internal.port}/secret")}
        with local_server(routes) as public:
            # Loopback stands in for a public CDN here, allowed by host:port only; the provider is elsewhere.
            settings.COMFYTRACK_ARCHIVE_ALLOW_PRIVATE_HOSTS = [f"127.0.0.1:{public.port}"]
            output = make_output("https://comfy.example.com", f"{public.root}/start?token=s3cr3t")
            assert archive_due_outputs() == 0
    assert [path for path, _ in public.hits] == ["/start", "/hop"]
    assert internal.hits == []
    output.refresh_from_db()
    assert "Refused" in output.archive_error and "loopback" in output.archive_error
    assert "s3cr3t" not in output.archive_error
    assert output.next_archive_after is None and not output.file
    assert stored_files(media) == []


def test_it_refuses_loopback_when_it_is_not_the_providers_host(media):
    with local_server({"/x.png": body(png_of_size(4, 4), "image/png")}) as server:
        output = make_output("https://comfy.example.com", f"{server.root}/x.png")
        assert archive_due_outputs() == 0
    assert server.hits == []
    output.refresh_from_db()
    assert output.archive_error.startswith("Refused to fetch from 127.0.0.1:")
    assert "COMFYTRACK_ARCHIVE_ALLOW_PRIVATE_HOSTS" in output.archive_error


def test_it_refuses_a_redirect_to_the_metadata_service(settings):
    with local_server({"/start": redirect("http://169.254.169.254/latest/meta-data/")}) as server:
        settings.COMFYTRACK_ARCHIVE_ALLOW_PRIVATE_HOSTS = [f"127.0.0.1:{server.port}"]
        output = make_output("https://comfy.example.com", f"{server.root}/start")
        assert archive_due_outputs() == 0
    output.refresh_from_db()
    assert "cloud metadata" in output.archive_error


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_it_refuses_a_body_over_the_cap(settings, media, declared):
    settings.COMFYTRACK_ARCHIVE_MAX_BYTES = 50_000
    with local_server({"/huge.bin": body(b"\0" * 200_000, length=declared)}) as server:
        output = make_output(server.root, f"{server.root}/huge.bin", kind=RunOutput.Kind.FILE)
        assert archive_due_outputs() == 0
    output.refresh_from_db()
    assert "too large" in output.archive_error and "50,000" in output.archive_error
    assert output.next_archive_after is None and not output.file and output.sha256 == ""
    assert stored_files(media) == [] and temp_files(media) == []


@pytest.mark.parametrize("after_headers", [False, True], ids=["no-answer", "stalled-body"])
def test_it_times_out_a_stalled_server(settings, media, after_headers):
    settings.COMFYTRACK_ARCHIVE_TIMEOUT = 0.5
    with local_server({"/slow.png": stall(3, after_headers=after_headers)}) as server:
        output = make_output(server.root, f"{server.root}/slow.png")
        started = time.monotonic()
        assert archive_due_outputs() == 0
        elapsed = time.monotonic() - started
    assert elapsed < 2.5
    output.refresh_from_db()
    assert "did not finish within 0.5 s" in output.archive_error
    assert output.archive_attempts == 1 and output.next_archive_after is not None  # transient: retried later
    assert stored_files(media) == [] and temp_files(media) == []


# -- exactly once ----------------------------------------------------------------------------------


def test_it_never_archives_an_output_twice(fake, media):
    url = fake_file_url(fake.root, "comfyui", "p-3", "a.png", in_future())
    output = make_output(fake.base_url("comfyui"), url)
    assert archive_due_outputs() == 1
    assert archive_due_outputs(now=later()) == 0
    assert len(stored_files(media)) == 2  # the file and its thumbnail, once
    assert RunOutput.objects.get(pk=output.pk).archive_attempts == 0


def test_it_leaves_leased_outputs_to_their_worker(fake):
    url = fake_file_url(fake.root, "comfyui", "p-4", "b.png", in_future())
    make_output(fake.base_url("comfyui"), url)
    claimed = claim_due_outputs(10)
    assert len(claimed) == 1
    assert archive_due_outputs() == 0  # leased by the first "worker"
    assert claim_due_outputs(10) == []


def test_it_drops_its_copy_when_another_worker_won(fake, media):
    url = fake_file_url(fake.root, "comfyui", "p-5", "c.png", in_future())
    output = make_output(fake.base_url("comfyui"), url)
    [claimed] = claim_due_outputs(10)
    results = download_batch([claimed])
    RunOutput.objects.filter(pk=output.pk).update(archived=timezone.now())  # the other worker
    assert store_result(claimed, results[output.pk]) == 0
    assert stored_files(media) == [] and temp_files(media) == []


# -- wiring and crash guard -----------------------------------------------------------------------


def test_it_runs_at_the_end_of_a_sync_sweep(fake):
    url = fake_file_url(fake.root, "comfyui", "p-6", "d.png", in_future())
    output = make_output(fake.base_url("comfyui"), url)
    assert sync_due_runs().archived == 1
    assert RunOutput.objects.get(pk=output.pk).archived is not None


def test_it_survives_an_unexpected_error_in_one_output(fake, media, monkeypatch):
    url = fake_file_url(fake.root, "comfyui", "p-7", "e.png", in_future())
    output = make_output(fake.base_url("comfyui"), url)

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(archive, "sniff", explode)
    assert archive_due_outputs() == 0
    output.refresh_from_db()
    assert output.archive_error == "Internal error while archiving (RuntimeError)."
    assert output.next_archive_after is not None
    assert output.archive_attempts == 1 and output.next_archive_after > timezone.now()
    assert temp_files(media) == []
