"""Fixtures shared by every app's tests."""

from __future__ import annotations

import os

import pytest

from providers.fake import FakeProviderServer

# The browser tests' fixtures (`browser`, `page`, `phone`), in one place for every app.
pytest_plugins = ["comfytrack.testing.browser"]


@pytest.fixture(scope="session")
def fake_server():
    """One fake provider server (all five APIs) on a loopback port for the whole session."""
    with FakeProviderServer() as server:
        yield server


@pytest.fixture
def fake(fake_server):
    """The fake server, reset before and after each test."""
    fake_server.state.reset()
    yield fake_server
    fake_server.state.reset()


# -- people and organizations (alice owns, bob reads, charlie is an outsider) -------


@pytest.fixture
def org(db):
    from accounts.models import Organization

    return Organization.objects.create(name="Acme", slug="acme")


@pytest.fixture
def other_org(db):
    from accounts.models import Organization

    return Organization.objects.create(name="Globex", slug="globex")


def _member(org, username, role, **flags):
    from django.contrib.auth import get_user_model

    from accounts.models import Membership

    user = get_user_model().objects.create_user(username, password="password", **flags)
    if org is not None:
        Membership.objects.create(organization=org, user=user, role=role)
    return user


@pytest.fixture
def alice(org):
    """Owner of `org`, staff (may use the admin)."""
    return _member(org, "alice", "owner", is_staff=True)


@pytest.fixture
def bob(org):
    """Read-only member (viewer) of `org`."""
    return _member(org, "bob", "viewer")


@pytest.fixture
def charlie(other_org):
    """Owner of another organization, staff: must never see `org`'s objects."""
    return _member(other_org, "charlie", "owner", is_staff=True)


@pytest.fixture
def make_provider(db):
    from providers.models import Credential, Provider

    def make(org, name="Deploy", kind="comfydeploy", base_url="", secret=None, config=None):
        provider = Provider.objects.create(
            organization=org, name=name, kind=kind, base_url=base_url, config=config or {}
        )
        credential = Credential(provider=provider, name="default")
        credential.set_secret(secret if secret is not None else {"token": "cd-secret-token-1234"})
        credential.save()
        return provider

    return make


@pytest.fixture
def provider(org, make_provider):
    return make_provider(org)


@pytest.fixture
def local(org, make_provider, fake):
    """A self-hosted ComfyUI of `org` on the fake provider server."""
    return make_provider(org, name="Local", kind="comfyui", base_url=fake.base_url("comfyui"), secret={})


@pytest.fixture
def key(org, alice):
    """An API key of `org` issued by alice: the bearer token to send."""
    from accounts.models import ApiKey

    return ApiKey.issue(org, "ci", created_by=alice)[1]


@pytest.fixture
def make_run(db):
    from runs.models import Run

    counter = iter(range(1, 1_000_000))

    def make(provider, external_id=None, **fields):
        return Run.objects.create(
            organization=provider.organization,
            provider=provider,
            credential=provider.credentials.first(),
            external_id=external_id if external_id is not None else f"ext-{next(counter)}",
            **fields,
        )

    return make


# -- Redis (django-q2's Redis broker) -----------------------------------------------------------------

# A database number of its own, so the suite never touches another program's keys on a shared Redis;
# tests also name their keys uniquely and delete only those.
TEST_REDIS_URL = os.environ.get("COMFYTRACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def redis_url():
    """The Redis the suite uses (CI runs one on 127.0.0.1:6379; .ci/run starts it when it is down)."""
    import redis

    client = redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()
    return TEST_REDIS_URL


# -- storage: the local directory and an S3 API (moto's server on loopback) ---------------------------


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on a loopback port for the session (a real S3 API over HTTP, in memory)."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


S3_TEST_KEYS = {"access_key": "moto-test-key", "secret_key": "moto-test-secret"}  # moto accepts any


def s3_options(endpoint: str, bucket: str, prefix: str = "comfytrack") -> dict:
    """The OPTIONS comfytrack.settings builds from COMFYTRACK_S3_* for this bucket."""
    return {
        "bucket_name": bucket,
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "location": prefix,
        "signature_version": "s3v4",
        "file_overwrite": False,
        "default_acl": None,
        **S3_TEST_KEYS,
    }


def s3_resource(endpoint: str):
    import boto3

    return boto3.resource(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_TEST_KEYS["access_key"],
        aws_secret_access_key=S3_TEST_KEYS["secret_key"],
    )


def s3_environment(endpoint: str, bucket: str, prefix: str) -> dict[str, str]:
    """The COMFYTRACK_S3_* variables an operator sets for this bucket (for processes the tests start)."""
    return {
        "COMFYTRACK_S3_BUCKET": bucket,
        "COMFYTRACK_S3_ENDPOINT_URL": endpoint,
        "COMFYTRACK_S3_REGION": "us-east-1",
        "COMFYTRACK_S3_ACCESS_KEY_ID": S3_TEST_KEYS["access_key"],
        "COMFYTRACK_S3_SECRET_ACCESS_KEY": S3_TEST_KEYS["secret_key"],
        "COMFYTRACK_S3_PREFIX": prefix,
    }


class StoredFiles:
    """What a storage backend under test holds, named relative to its root."""

    def __init__(self, kind: str, names, bucket=None) -> None:
        self.kind, self._names, self.bucket = kind, names, bucket

    def names(self) -> set[str]:
        return set(self._names())


@pytest.fixture(params=["local", "s3"])
def storage(request, settings, tmp_path):
    """Archived files in a fresh local MEDIA_ROOT, or in a fresh bucket (under a key prefix) on moto's S3."""
    if request.param == "local":
        root = tmp_path / "media"
        settings.MEDIA_ROOT = str(root)
        settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"}}
        yield StoredFiles("local", lambda: (str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()))
        return
    import uuid

    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = s3_resource(endpoint).Bucket(f"ct-test-{uuid.uuid4().hex[:16]}")
    bucket.create()
    options = s3_options(endpoint, bucket.name)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "comfytrack.storage.BucketStorage", "OPTIONS": options},
    }
    yield StoredFiles("s3", lambda: (obj.key.removeprefix("comfytrack/") for obj in bucket.objects.all()), bucket)
    bucket.objects.all().delete()
    bucket.delete()
