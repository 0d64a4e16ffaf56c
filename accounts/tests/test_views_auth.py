"""Sign in/out and the organization switcher."""

from __future__ import annotations

import pytest

from accounts.models import Membership


@pytest.mark.django_db
def test_it_signs_in_and_out(client, alice):
    assert client.get("/runs/").status_code == 302
    response = client.post("/login/", {"username": "alice", "password": "password"})
    assert response.status_code == 302 and response["Location"] == "/runs/"
    page = client.get("/runs/")
    assert b"Sign out" in page.content and b"Acme" in page.content
    assert client.post("/logout/").status_code == 302
    assert client.get("/runs/").status_code == 302


@pytest.mark.django_db
def test_it_shows_a_clear_message_for_a_wrong_password(client, alice):
    response = client.post("/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200 and b"match" in response.content


@pytest.mark.django_db
def test_home_redirects_to_runs(client, alice):
    client.force_login(alice)
    assert client.get("/")["Location"] == "/runs/"


@pytest.mark.django_db
def test_it_switches_organization_and_stores_the_code_in_the_session(client, alice, other_org):
    Membership.objects.create(organization=other_org, user=alice, role="viewer")
    client.force_login(alice)
    client.get("/runs/")
    response = client.post("/org/", {"org": str(other_org.code), "next": "/gallery/"})
    assert response["Location"] == "/gallery/"
    assert client.session["org"] == str(other_org.code)
    page = client.get("/runs/")
    assert b"Globex" in page.content
    # A viewer there: no submit link, no action buttons.
    assert b'href="/runs/new/"' not in page.content


@pytest.mark.django_db
def test_it_hides_other_orgs(client, alice, charlie, org):
    client.force_login(charlie)
    assert client.post("/org/", {"org": str(org.code)}).status_code == 404
    assert client.post("/org/", {"org": "not-a-uuid"}).status_code == 404
    client.get("/runs/")
    assert client.session["org"] != str(org.code)


@pytest.mark.django_db
def test_a_stale_session_org_falls_back_to_a_real_membership(client, alice, other_org, org):
    client.force_login(alice)
    session = client.session
    session["org"] = str(other_org.code)  # not a member: must not be honoured
    session.save()
    assert b"Acme" in client.get("/runs/").content
    assert client.session["org"] == str(org.code)


@pytest.mark.django_db
def test_a_user_without_organization_gets_a_clear_page(client, django_user_model):
    user = django_user_model.objects.create_user("dave", password="password")
    client.force_login(user)
    response = client.get("/runs/")
    assert response.status_code == 403 and b"No organization yet" in response.content


@pytest.mark.django_db
def test_pages_send_an_enforced_csp_without_unsafe_inline(client, alice):
    client.force_login(alice)
    response = client.get("/runs/")
    csp = response["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert b"<style" not in response.content and b' style="' not in response.content
    assert b'name="htmx-config"' in response.content and b'"allowEval": false' in response.content
