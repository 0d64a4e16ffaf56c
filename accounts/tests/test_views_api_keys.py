"""The API keys page: admins create (shown once), list with last use, revoke."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone

from accounts.models import ApiKey, Membership


@pytest.mark.django_db
def test_it_creates_a_key_and_shows_it_once(client, alice, org):
    client.force_login(alice)
    response = client.post("/settings/api-keys/new/", {"name": "farm", "read_only": "1"})
    # POST-redirect-GET: the page that shows the key is a GET, so reloading it posts nothing.
    assert response.status_code == 302 and response["Location"] == "/settings/api-keys/"
    key = ApiKey.objects.get(organization=org, name="farm")
    assert key.read_only
    stored = [row.get_decoded() for row in Session.objects.all()]
    shown = client.get("/settings/api-keys/")
    plain = shown.context["plain"]
    assert plain.encode() in shown.content and ApiKey.objects.authenticate(plain) == key
    # The session carried it encrypted, never in plaintext (sessions are stored in the database).
    assert stored and not any(plain in str(data) for data in stored)
    listing = client.get("/settings/api-keys/")
    assert plain.encode() not in listing.content and key.prefix.encode() in listing.content
    assert ApiKey.objects.filter(organization=org).count() == 1


@pytest.mark.django_db
def test_it_refuses_a_blank_or_duplicate_name(client, alice, org):
    client.force_login(alice)
    ApiKey.issue(org, "farm")
    assert b"Give the key a name" in client.post("/settings/api-keys/new/", {"name": " "}, follow=True).content
    assert b"already exists" in client.post("/settings/api-keys/new/", {"name": "farm"}, follow=True).content
    assert ApiKey.objects.filter(organization=org).count() == 1


@pytest.mark.django_db
def test_it_revokes(client, alice, org):
    key, _ = ApiKey.issue(org, "old")
    client.force_login(alice)
    assert client.post(f"/settings/api-keys/{key.code}/revoke/").status_code == 302
    key.refresh_from_db()
    assert key.revoked is not None


@pytest.mark.django_db
def test_members_and_viewers_cannot_manage_keys(client, bob, org, django_user_model):
    key, _ = ApiKey.issue(org, "k")
    client.force_login(bob)
    assert client.get("/settings/api-keys/").status_code == 403
    assert client.post("/settings/api-keys/new/", {"name": "x"}).status_code == 403
    assert client.post(f"/settings/api-keys/{key.code}/revoke/").status_code == 403
    member = django_user_model.objects.create_user("mia", password="password")
    Membership.objects.create(organization=org, user=member, role="member")
    client.force_login(member)
    assert client.get("/settings/api-keys/").status_code == 403
    key.refresh_from_db()
    assert key.revoked is None


@pytest.mark.django_db
def test_revoke_needs_post(client, alice, org):
    key, _ = ApiKey.issue(org, "k")
    client.force_login(alice)
    assert client.get(f"/settings/api-keys/{key.code}/revoke/").status_code == 405


@pytest.mark.django_db
def test_it_hides_other_orgs(client, alice, charlie, org):
    key, _ = ApiKey.issue(org, "secret-integration")
    client.force_login(charlie)
    assert b"secret-integration" not in client.get("/settings/api-keys/").content
    assert client.post(f"/settings/api-keys/{key.code}/revoke/").status_code == 404
    key.refresh_from_db()
    assert key.revoked is None


@pytest.mark.django_db
def test_last_use_reads_as_a_relative_time_never_zero_minutes(client, alice, org):
    from datetime import timedelta

    from django.utils import timezone

    key, _ = ApiKey.issue(org, "farm")
    ApiKey.objects.filter(pk=key.pk).update(last_used=timezone.now() - timedelta(seconds=3))
    client.force_login(alice)
    content = client.get("/settings/api-keys/").content.decode()
    assert ">just now</time>" in content and "0 minutes" not in content


@pytest.mark.django_db
def test_a_key_authenticates_with_the_values_the_orm_loads(org, other_org):
    key, plain = ApiKey.issue(org, "ci", read_only=True)
    ApiKey.objects.filter(pk=key.pk).update(last_used=timezone.now() - timedelta(minutes=5))
    twin, twin_plain = ApiKey.issue(other_org, "theirs")
    found = ApiKey.objects.authenticate(plain)
    stored = ApiKey.objects.get(pk=key.pk)
    assert found is not None
    for name in ("id", "code", "organization_id", "key_hash", "read_only", "last_used", "name", "created", "prefix"):
        assert getattr(found, name) == getattr(stored, name), name
    assert isinstance(found.code, uuid.UUID) and found.read_only is True
    assert found.last_used is not None and found.last_used.utcoffset() == timedelta(0)
    assert ApiKey.objects.authenticate(twin_plain) == twin
    assert ApiKey.objects.authenticate(plain[:-1] + ("a" if plain[-1] != "a" else "b")) is None
    ApiKey.objects.filter(pk=key.pk).update(revoked=timezone.now())
    assert ApiKey.objects.authenticate(plain) is None
