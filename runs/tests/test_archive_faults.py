"""The archive when things go wrong: a full disk, a 4xx from storage, a signed link that refuses the API
key, a batch whose outputs all fail, a worker that dies mid-batch; and the retry button on the run page."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from providers.fake import state as S
from providers.fake.files import output_seed
from providers.fake.png import png_bytes
from runs import archive
from runs.archive import CLIENT_ERROR_GIVE_UP_AFTER, MAX_ATTEMPTS, archive_due_outputs
from runs.models import Run, RunOutput
from runs.sync import sync_due_runs
from runs.tests.archive_helpers import (
    FullDisk,
    body,
    fake_file_url,
    local_server,
    make_output,
    stub_client_registered,
)

pytestmark = pytest.mark.django_db
ENOSPC_MESSAGE = "No space left on device writing to media storage."


@pytest.fixture
def media(settings, tmp_path, monkeypatch):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.COMFYTRACK_ARCHIVE_ALLOW_PRIVATE_HOSTS = []
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    return tmp_path


def files_in(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


def in_future(seconds: int = 3600) -> int:
    return int(timezone.now().timestamp()) + seconds


@pytest.fixture
def disk(media, monkeypatch):
    """Set the room left on the outputs' storage (a unit-test seam on the two FileFields)."""

    def fill(room: int) -> FullDisk:
        storage = FullDisk(room, location=str(media / "media"))
        for name in ("file", "thumbnail"):
            monkeypatch.setattr(RunOutput._meta.get_field(name), "storage", storage)
        return storage

    return fill


def test_a_full_disk_leaves_nothing_behind_names_the_cause_and_backs_off(fake, media, disk):
    disk(room=10)
    url = fake_file_url(fake.root, "comfyui", "p-1", "ComfyUI_00001_.png", in_future())
    with stub_client_registered():
        output = make_output(fake.base_url("comfyui"), url)
        assert archive_due_outputs() == 0
    output.refresh_from_db()
    assert output.archive_error == ENOSPC_MESSAGE
    assert output.archived is None and output.archive_attempts == 1
    assert output.next_archive_after is not None
    assert output.next_archive_after > timezone.now() + timedelta(seconds=20)  # backed off
    assert files_in(media / "media") == []  # not even the partial file
    assert files_in(media / "tmp") == []  # nor the download


def test_a_disk_that_fills_at_the_thumbnail_removes_the_file_too(fake, media, disk):
    expected = png_bytes(output_seed("comfyui", "p-2", "ComfyUI_00001_.png"))
    disk(room=len(expected) + 5)  # the file fits, its thumbnail does not
    url = fake_file_url(fake.root, "comfyui", "p-2", "ComfyUI_00001_.png", in_future())
    with stub_client_registered():
        output = make_output(fake.base_url("comfyui"), url)
        assert archive_due_outputs() == 0
    assert RunOutput.objects.get(pk=output.pk).archive_error == ENOSPC_MESSAGE
    assert files_in(media / "media") == []


def test_storage_failures_stop_after_a_bound_in_a_state_a_member_can_retry_from_the_run_page(
    fake, media, disk, client, alice, bob, org
):
    storage = disk(room=0)
    url = fake_file_url(fake.root, "comfyui", "p-3", "ComfyUI_00001_.png", in_future())
    with stub_client_registered():
        output = make_output(fake.base_url("comfyui"), url)
        RunOutput.objects.filter(pk=output.pk).update(organization=org)
        Run.objects.filter(pk=output.run_id).update(organization=org)
        for attempt in range(MAX_ATTEMPTS):
            assert archive_due_outputs(now=timezone.now() + timedelta(days=attempt + 1)) == 0
        output.refresh_from_db()
        assert output.archive_attempts == MAX_ATTEMPTS and output.next_archive_after is None
        assert output.archive_error == f"{ENOSPC_MESSAGE} Gave up after {MAX_ATTEMPTS} attempt(s)."
        assert archive_due_outputs(now=timezone.now() + timedelta(days=365)) == 0  # it stays stopped

        run = output.run
        client.force_login(alice)
        session = client.session
        session["org"] = org.pk
        session.save()
        page = client.get(reverse("run-detail", args=[run.code])).content.decode()
        assert "Archive failed" in page and "No space left on device" in page and "Retry archiving" in page

        client.force_login(bob)  # a viewer: no button, and the action is refused
        session = client.session
        session["org"] = org.pk
        session.save()
        assert "Retry archiving" not in client.get(reverse("run-detail", args=[run.code])).content.decode()
        assert client.post(reverse("run-archive-retry", args=[run.code])).status_code in (403, 404)
        assert RunOutput.objects.get(pk=output.pk).next_archive_after is None

        client.force_login(alice)
        session = client.session
        session["org"] = org.pk
        session.save()
        storage.room = 10**9  # space was freed
        response = client.post(reverse("run-archive-retry", args=[run.code]))
        assert response.status_code == 302
        output.refresh_from_db()
        assert output.archive_attempts == 0 and output.next_archive_after is not None
        assert archive_due_outputs() == 1
    output.refresh_from_db()
    assert output.archived is not None and output.archive_error == ""


def test_a_4xx_from_storage_gets_a_few_tries(media):
    with local_server({}) as storage, stub_client_registered():  # every path answers 404
        output = make_output(storage.root, f"{storage.root}/signed.png?sig=abc", expires=timezone.now() + timedelta(1))
        for attempt in range(1, CLIENT_ERROR_GIVE_UP_AFTER + 1):
            assert archive_due_outputs(now=timezone.now() + timedelta(days=attempt)) == 0
            output.refresh_from_db()
            assert output.archive_attempts == attempt
            assert (output.next_archive_after is None) == (attempt == CLIENT_ERROR_GIVE_UP_AFTER)
    assert "Gave up after 3 attempt(s)" in output.archive_error


def test_comfy_cloud_outputs_are_archived_through_the_view_redirect_without_the_key(org, make_provider, fake, media):
    """/api/view answers 302 to a signed link on the same host that refuses a request carrying X-API-Key."""
    kind = "comfycloud"
    provider = make_provider(org, name="Cloud", kind=kind, base_url=fake.base_url(kind), secret=fake.secret(kind))
    fake.add_run(kind, "job-1", script=((0.0, S.SUCCEEDED),), n_outputs=2)
    Run.objects.create(
        organization=org, provider=provider, credential=provider.credentials.first(), external_id="job-1"
    )
    stats = sync_due_runs()
    outputs = list(RunOutput.objects.order_by("filename"))
    assert len(outputs) == 2 and stats.archived == 2, [o.archive_error for o in outputs]
    for output in outputs:
        assert output.file.read() == png_bytes(output_seed(kind, "job-1", output.filename))
    views = [path for k, method, path in fake.state.requests if k == kind and path.endswith("/api/view")]
    assert len(views) == 2  # through the redirect, as Comfy Cloud's outputs are


def test_once_archives_everything_due_past_a_batch_whose_outputs_all_failed(fake, media, monkeypatch):
    monkeypatch.setattr(archive, "BATCH_SIZE", 5)
    monkeypatch.setattr(archive.archive_due_batch, "__defaults__", (5, None))
    with stub_client_registered():
        broken = [make_output(fake.base_url("comfyui"), f"{fake.root}/files/comfyui/x/{i}.png") for i in range(10)]
        good = [
            make_output(fake.base_url("comfyui"), fake_file_url(fake.root, "comfyui", f"g-{i}", "a.png", in_future()))
            for i in range(3)
        ]
        RunOutput.objects.filter(pk__in=[o.pk for o in broken]).update(
            next_archive_after=timezone.now() - timedelta(minutes=5)  # due first: two whole failed batches
        )
        call_command("sync_runs", "--once", stdout=io.StringIO())
    assert RunOutput.objects.filter(pk__in=[o.pk for o in good], archived__isnull=False).count() == 3
    assert RunOutput.objects.filter(pk__in=[o.pk for o in broken], archive_attempts=1).count() == 10


def test_a_dead_workers_outputs_are_due_again_within_two_minutes(fake, media):
    url = fake_file_url(fake.root, "comfyui", "p-9", "a.png", in_future())
    with stub_client_registered():
        output = make_output(fake.base_url("comfyui"), url)
        claimed = archive.claim_due_outputs(10)
        assert [o.pk for o in claimed] == [output.pk]
        # The worker dies here: it never renews nor records anything.
        assert archive.claim_due_outputs(10) == []
        lease_end = RunOutput.objects.get(pk=output.pk).next_archive_after
        assert lease_end is not None and lease_end <= timezone.now() + timedelta(minutes=2)
        assert archive_due_outputs(now=lease_end + timedelta(seconds=1)) == 1


def test_leases_are_renewed_while_a_slow_batch_downloads(media, monkeypatch):
    import time

    monkeypatch.setattr(archive, "LEASE", replace(archive.LEASE, renew_every=0.2))

    def slow(handler):
        time.sleep(1.0)
        body(b"slow bytes")(handler)

    with local_server({"/slow.txt": slow}) as server, stub_client_registered():
        output = make_output(server.root, f"{server.root}/slow.txt", kind=RunOutput.Kind.TEXT)
        renewals = []
        original = archive.Holder.renew

        def counting(self):
            renewals.append(time.monotonic())
            original(self)

        monkeypatch.setattr(archive.Holder, "renew", counting)
        assert archive_due_outputs() == 1
    assert len(renewals) >= 3
    assert RunOutput.objects.get(pk=output.pk).archived is not None
