"""Archive, thumbnails, gallery, downloads and retention on each storage backend: the local directory
and an S3 bucket (moto's S3 server on loopback, through comfytrack.storage.BucketStorage).

The same tests run on both (the `storage` fixture in conftest.py); the runs come from the fake
provider over loopback HTTP and are synced and archived by the real engine.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from comfytrack.retention import prune_expired
from providers.fake import state as S
from runs.models import Run, RunEvent, RunOutput, Status
from runs.sync import sync_due_runs

pytestmark = pytest.mark.django_db(transaction=True)
KIND = "comfyui"


@pytest.fixture
def comfyui(org, make_provider, fake):
    return make_provider(org, name="Studio ComfyUI", kind=KIND, base_url=fake.base_url(KIND), secret=fake.secret(KIND))


def finished_run(fake, provider, external_id: str, *, script=((0.0, S.SUCCEEDED),)) -> Run:
    """A run the fake provider has finished, synced and its outputs archived by the real engine."""
    fake.add_run(KIND, external_id, script=script, n_outputs=1)
    run = Run.objects.create(
        organization=provider.organization,
        provider=provider,
        credential=provider.credentials.first(),
        external_id=external_id,
    )
    sync_due_runs(archive=True)
    run.refresh_from_db()
    return run


def test_outputs_are_archived_with_their_thumbnails_into_the_storage(storage, fake, comfyui):
    run = finished_run(fake, comfyui, "st-1")
    output = run.outputs.get()
    assert run.status == Status.SUCCEEDED and output.archived is not None, output.archive_error
    assert storage.names() == {output.file.name, output.thumbnail.name}
    assert output.file.name is not None and output.thumbnail.name is not None
    assert output.file.name.startswith("outputs/") and output.thumbnail.name.startswith("thumbnails/")
    with output.file.open("rb") as handle:
        data = handle.read()
    assert hashlib.sha256(data).hexdigest() == output.sha256 and len(data) == output.size_bytes
    if storage.kind == "s3":
        # Under the configured prefix, and private: the bucket grants nobody anything.
        assert all(obj.key.startswith("comfytrack/") for obj in storage.bucket.objects.all())


def test_two_outputs_with_the_same_filename_never_overwrite_each_other(storage, fake, comfyui):
    first = finished_run(fake, comfyui, "same-1").outputs.get()
    second = finished_run(fake, comfyui, "same-2").outputs.get()
    assert first.filename == second.filename and first.file.name != second.file.name
    assert first.sha256 != second.sha256
    assert {first.file.name, second.file.name} <= storage.names()


def test_the_gallery_thumbnails_and_downloads_are_served_from_the_storage(storage, client, alice, fake, comfyui):
    output = finished_run(fake, comfyui, "st-2").outputs.get()
    client.force_login(alice)
    gallery = client.get("/gallery/")
    assert gallery.status_code == 200 and f"/outputs/{output.code}/thumbnail/" in gallery.content.decode()

    thumbnail = client.get(f"/outputs/{output.code}/thumbnail/")
    body = b"".join(thumbnail.streaming_content)
    assert thumbnail.status_code == 200 and body[:4] == b"RIFF" and body[8:12] == b"WEBP"

    download = client.get(f"/outputs/{output.code}/file/?download=1")
    data = b"".join(download.streaming_content)
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment")
    assert download["X-Content-Type-Options"] == "nosniff"
    assert int(download["Content-Length"]) == len(data) == output.size_bytes
    assert hashlib.sha256(data).hexdigest() == output.sha256


def test_a_file_missing_from_the_storage_is_a_clear_404(storage, client, alice, fake, comfyui):
    output = finished_run(fake, comfyui, "st-3").outputs.get()
    assert output.file.name is not None
    output.file.storage.delete(output.file.name)
    client.force_login(alice)
    response = client.get(f"/outputs/{output.code}/file/")
    assert response.status_code == 404


def test_retention_deletes_old_outputs_with_their_files_and_never_a_run_in_flight(storage, fake, comfyui, org):
    old = finished_run(fake, comfyui, "old-1")
    recent = finished_run(fake, comfyui, "recent-1")
    flying = finished_run(fake, comfyui, "flying-1", script=((0.0, S.RUNNING),))
    assert flying.status == Status.RUNNING and flying.outputs.count() == 0
    # A run still in flight with an output (providers show them before the end) and an old creation date.
    flying_output = RunOutput.objects.create(run=flying, key="partial", filename="partial.png")
    Run.objects.filter(pk=old.pk).update(finished=timezone.now() - timedelta(days=40))
    Run.objects.filter(pk=flying.pk).update(created=timezone.now() - timedelta(days=400))
    old_output, recent_output = old.outputs.get(), recent.outputs.get()
    old_events = RunEvent.objects.filter(run=old).count()
    assert old_events >= 1

    org.retention_days = 30
    org.save()
    pruned = prune_expired()

    assert (pruned.organizations, pruned.outputs, pruned.files, pruned.file_errors) == (1, 1, 2, 0)
    assert pruned.events == old_events
    assert not RunEvent.objects.filter(run=old).exists() and RunEvent.objects.filter(run=recent).exists()
    assert set(RunOutput.objects.values_list("pk", flat=True)) == {recent_output.pk, flying_output.pk}
    assert storage.names() == {recent_output.file.name, recent_output.thumbnail.name}
    assert old_output.file.name not in storage.names()
    old.refresh_from_db()
    assert old.status == Status.SUCCEEDED and old.n_outputs == 0  # the run itself stays
    assert (
        prune_expired().summary().startswith("Pruned 1 organization(s) with a retention limit: 0 event(s), 0 output(s)")
    )


def test_the_bucket_settings_come_from_the_environment(s3_endpoint, tmp_path):
    """COMFYTRACK_S3_* in a fresh process: a file saved through default_storage lands in the bucket."""
    import subprocess
    import sys

    from comfytrack.tests.processes import ROOT, child_env
    from conftest import s3_environment, s3_resource

    s3 = s3_resource(s3_endpoint)
    bucket = s3.Bucket(f"ct-env-{uuid.uuid4().hex[:16]}")
    bucket.create()
    env = child_env(**s3_environment(s3_endpoint, bucket.name, "/team-a/"))
    code = (
        "from django.core.files.base import ContentFile; from django.core.files.storage import default_storage as s; "
        "print(type(s._wrapped).__name__ if s.save('outputs/x.txt', ContentFile(b'hello')) else '')"
    )
    try:
        result = subprocess.run(
            [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout.decode().strip() == "BucketStorage"
        assert [(obj.key, obj.get()["Body"].read()) for obj in bucket.objects.all()] == [
            ("team-a/outputs/x.txt", b"hello")
        ]
    finally:
        bucket.objects.all().delete()
        bucket.delete()


def test_a_bucket_that_refuses_the_write_is_named_on_the_output(s3_endpoint, settings, fake, comfyui):
    from conftest import s3_options

    missing = s3_options(s3_endpoint, f"ct-missing-{uuid.uuid4().hex[:12]}")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "comfytrack.storage.BucketStorage", "OPTIONS": missing},
    }
    output = finished_run(fake, comfyui, "refused-1").outputs.get()
    assert output.archived is None
    assert output.archive_error == "The object storage refused to store the file (NoSuchBucket)."
    assert output.next_archive_after is not None  # tried again later


def test_an_unreachable_bucket_endpoint_is_named_on_the_output(settings, fake, comfyui):
    from comfytrack.tests.processes import free_port
    from conftest import s3_options

    closed = s3_options(f"http://127.0.0.1:{free_port()}", "ct-nowhere")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "comfytrack.storage.BucketStorage", "OPTIONS": closed},
    }
    output = finished_run(fake, comfyui, "unreachable-1").outputs.get()
    assert output.archived is None
    assert output.archive_error == (
        "The object storage could not be reached (EndpointConnectionError); it will be tried again."
    )
