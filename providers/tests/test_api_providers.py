"""GET /api/v1/providers: health per provider, runs in flight, never a secret."""

from __future__ import annotations

import pytest
from django.utils import timezone

from accounts.models import ApiKey
from runs.models import Status

SECRET = "cd-secret-token-1234"


@pytest.fixture
def key(org):
    return ApiKey.issue(org, "ci")[1]


def providers(client, key):
    response = client.get("/api/v1/providers", headers={"X-API-Key": key})
    assert response.status_code == 200
    return response


def test_it_lists_providers_with_health(client, org, make_provider, make_run, key):
    ok = make_provider(org, name="Deploy")
    failing = make_provider(org, name="Broken")
    make_run(ok, status=Status.RUNNING)
    make_run(ok, status=Status.QUEUED)
    make_run(ok, status=Status.SUCCEEDED)
    now = timezone.now()
    ok.credentials.get().mark_ok(now)
    failing.credentials.get().mark_failed("401 Unauthorized: the token was refused", permanent=True)
    body = {p["name"]: p for p in providers(client, key).json()}
    assert body["Deploy"]["runs_in_flight"] == 2 and body["Deploy"]["healthy"] is True
    assert body["Deploy"]["last_ok"] is not None and body["Deploy"]["failing_since"] is None
    assert body["Broken"]["healthy"] is False and "refused" in body["Broken"]["last_error"]
    assert body["Broken"]["failing_since"] is not None and body["Broken"]["runs_in_flight"] == 0
    assert body["Deploy"]["kind"] == "comfydeploy" and body["Deploy"]["id"] == str(ok.code)
    assert [c["name"] for c in body["Deploy"]["credentials"]] == ["default"]


def test_it_never_returns_a_secret(client, org, make_provider, key):
    provider = make_provider(org)
    provider.credentials.get().mark_failed("boom")
    response = providers(client, key)
    assert SECRET not in response.content.decode() and SECRET[-4:] not in response.content.decode()
    assert "secret" not in response.content.decode().lower()


def test_it_hides_other_orgs(client, org, other_org, make_provider, charlie):
    make_provider(org, name="Ours")
    theirs = ApiKey.issue(other_org, "theirs")[1]
    assert providers(client, theirs).json() == []


def test_it_requires_a_key(client, org):
    response = client.get("/api/v1/providers")
    assert response.status_code == 401 and response.json()["code"] == "unauthorized"


def test_it_uses_a_constant_number_of_queries(client, org, make_provider, key, django_assert_max_num_queries):
    providers(client, key)
    for i in range(10):
        make_provider(org, name=f"P{i}")
    with django_assert_max_num_queries(4):
        assert len(providers(client, key).json()) == 10
