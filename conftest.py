"""Fixtures shared by every app's tests."""

from __future__ import annotations

import os

import pytest

from providers.fake import FakeProviderServer


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
