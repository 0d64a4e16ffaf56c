"""Providers page: health per credential, runs in flight, test connection."""

from __future__ import annotations

from django.utils import timezone

from runs.models import Status


def test_it_shows_health_and_runs_in_flight(client, alice, provider, make_run):
    credential = provider.credentials.get()
    credential.mark_failed("401 Unauthorized: bad token", permanent=True)
    make_run(provider, status=Status.RUNNING)
    make_run(provider, status=Status.SUCCEEDED)
    client.force_login(alice)
    content = client.get("/providers/").content.decode()
    assert "Failing" in content and "401 Unauthorized: bad token" in content and "1 run in flight" in content
    assert "cd-secret-token-1234" not in content


def test_test_connection_records_success(client, alice, local):
    client.force_login(alice)
    response = client.post(f"/providers/{local.code}/test/", follow=True)
    assert response.status_code == 200 and b"Local" in response.content
    credential = local.credentials.get()
    assert credential.last_ok is not None and credential.last_ok <= timezone.now()


def test_test_connection_reports_failure_clearly(client, alice, org, make_provider):
    dead = make_provider(org, name="Dead", kind="comfyui", base_url="http://127.0.0.1:9", secret={})
    client.force_login(alice)
    response = client.post(f"/providers/{dead.code}/test/", follow=True)
    assert response.status_code == 200 and b"msg-error" in response.content


def test_viewers_cannot_test(client, bob, local):
    client.force_login(bob)
    assert b"Test connection" not in client.get("/providers/").content
    assert client.post(f"/providers/{local.code}/test/").status_code == 403
    assert client.get(f"/providers/{local.code}/test/").status_code == 403


def test_it_hides_other_orgs(client, charlie, local):
    client.force_login(charlie)
    assert b"Local" not in client.get("/providers/").content
    assert client.post(f"/providers/{local.code}/test/").status_code == 404
