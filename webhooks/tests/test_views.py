"""/settings/webhooks/: list, create (secret shown once), delete, pause, delivery log and redeliver."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import Client

from webhooks.models import WebhookDelivery, WebhookEndpoint

LIST = "/settings/webhooks/"


def delivery_for(endpoint) -> WebhookDelivery:
    return WebhookDelivery.objects.create(
        endpoint=endpoint, event_id="msg_1", event_type="run.failed", payload={"type": "run.failed"}, attempt=3,
        status_code=500, response_excerpt="upstream exploded", error="The endpoint answered 500.",
    )  # fmt: skip


def test_it_requires_login(client, org):
    response = client.get(LIST)
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_it_creates_an_endpoint_and_shows_the_secret_once(client, alice, org):
    client.force_login(alice)
    response = client.post(LIST, {"url": "https://hooks.example.com/ct", "events": ["run.failed", "run.succeeded"]})
    endpoint = WebhookEndpoint.objects.get()
    # POST-redirect-GET: the endpoint's page shows the secret; reloading it posts nothing.
    assert response.status_code == 302 and response["Location"] == f"{LIST}{endpoint.code}/"
    assert endpoint.organization == org and endpoint.events == ["run.failed", "run.succeeded"]
    secret = endpoint.signing_secret
    assert not any(secret in str(row.get_decoded()) for row in Session.objects.all())  # encrypted meanwhile
    assert secret.startswith("whsec_") and secret in client.get(response["Location"]).content.decode()
    assert secret not in client.get(response["Location"]).content.decode()  # once
    again = client.get(LIST)
    assert secret not in again.content.decode() and "hooks.example.com/ct" in again.content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)", again.content.decode())  # CSP: no inline scripts


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/x", "http://10.0.0.5/x", "http://169.254.169.254/latest", "http://localhost/x",
            "ftp://example.com/x", "not a url"],
)  # fmt: skip
def test_it_refuses_private_and_odd_targets(client, alice, url):
    client.force_login(alice)
    response = client.post(LIST, {"url": url})
    assert response.status_code == 200 and not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    "allowed, url, accepted",
    [
        (["localhost:443"], "https://localhost/x", True),
        (["localhost:80"], "https://localhost/x", False),  # https's default port is 443, not 80
        (["localhost:80"], "http://localhost/x", True),
    ],
)
def test_it_checks_localhost_on_the_schemes_default_port(client, alice, settings, allowed, url, accepted):
    settings.COMFYTRACK_WEBHOOK_ALLOW_PRIVATE_HOSTS = allowed
    client.force_login(alice)
    response = client.post(LIST, {"url": url})
    assert response.status_code == (302 if accepted else 200)
    assert WebhookEndpoint.objects.filter(url=url).exists() == accepted


def test_it_lets_viewers_look_but_not_change(client, bob, org, make_endpoint):
    endpoint, _ = make_endpoint(org, "https://hooks.example.com/ct")
    delivery = delivery_for(endpoint)
    client.force_login(bob)
    assert client.get(LIST).status_code == 200
    detail = client.get(f"{LIST}{endpoint.code}/")
    assert detail.status_code == 200 and "The endpoint answered 500." in detail.content.decode()
    assert "Redeliver" not in detail.content.decode()
    assert client.post(LIST, {"url": "https://other.example.com/"}).status_code == 403
    assert client.post(f"{LIST}{endpoint.code}/delete/").status_code == 403
    assert client.post(f"{LIST}{endpoint.code}/deliveries/{delivery.code}/redeliver/").status_code == 403
    assert WebhookEndpoint.objects.count() == 1 and WebhookDelivery.objects.count() == 1


SECRET_URL = "https://hooks.slack.com/services/T0001/B0002/s3cr3tT0k3n?x=key-in-query"


@pytest.mark.parametrize("role", ["viewer", "member"])
def test_viewers_and_members_see_webhook_urls_masked(client, org, make_endpoint, role):
    """Receivers' URLs often are their secret (Slack, Discord): only owners and admins see them whole."""
    endpoint, _ = make_endpoint(org, SECRET_URL)
    WebhookDelivery.objects.create(
        endpoint=endpoint, event_id="msg_2", event_type="run.failed", payload={}, attempt=1, status_code=404,
        response_excerpt="no_service s3cr3tT0k3n", error=f"Could not reach {SECRET_URL}: timed out.",
    )  # fmt: skip
    user = get_user_model().objects.create_user(f"a-{role}", password="password")
    org.memberships.create(user=user, role=role)
    client.force_login(user)
    pages = client.get(LIST).content.decode() + client.get(f"{LIST}{endpoint.code}/").content.decode()
    assert "s3cr3tT0k3n" not in pages and "key-in-query" not in pages
    assert "https://hooks.slack.com/…" in pages and "Could not reach https://hooks.slack.com/…" in pages


def test_owners_see_webhook_urls_and_answers_whole(client, alice, org, make_endpoint):
    endpoint, _ = make_endpoint(org, SECRET_URL)
    delivery = delivery_for(endpoint)
    client.force_login(alice)
    page = client.get(f"{LIST}{endpoint.code}/").content.decode()
    assert "s3cr3tT0k3n?x=key-in-query" in page.replace("&amp;", "&") and delivery.response_excerpt in page


@pytest.mark.parametrize(
    ("url", "shown"),
    [("http://[::1]:8080/x", "[::1] is a loopback address"), ("http://[fd00::5]/x", "[fd00::5] is a private address"),
     ("http://10.0.0.5/x", "10.0.0.5 is a private address")],
)  # fmt: skip
def test_the_refusal_names_the_whole_address(client, alice, url, shown):
    client.force_login(alice)
    response = client.post(LIST, {"url": url})
    assert f"Webhooks cannot target private or local addresses ({shown})." in response.content.decode()


def test_it_hides_other_orgs(client, charlie, org, make_endpoint):
    endpoint, _ = make_endpoint(org, "https://hooks.example.com/ct")
    delivery = delivery_for(endpoint)
    client.force_login(charlie)
    assert "hooks.example.com" not in client.get(LIST).content.decode()
    assert client.get(f"{LIST}{endpoint.code}/").status_code == 404
    assert client.post(f"{LIST}{endpoint.code}/delete/").status_code == 404
    assert client.post(f"{LIST}{endpoint.code}/toggle/").status_code == 404
    assert client.post(f"{LIST}{endpoint.code}/deliveries/{delivery.code}/redeliver/").status_code == 404
    assert WebhookEndpoint.objects.filter(is_active=True).count() == 1


def test_it_treats_every_page_alike_for_a_user_without_an_organization(client, org, make_endpoint):
    endpoint, _ = make_endpoint(org, "https://hooks.example.com/ct")
    client.force_login(get_user_model().objects.create_user("dave", password="password"))
    pages = [("get", LIST), ("get", f"{LIST}{endpoint.code}/"), ("post", f"{LIST}{endpoint.code}/toggle/")]
    for method, url in pages:
        response = getattr(client, method)(url)
        assert response.status_code == 403 and b"No organization yet" in response.content, url
    assert WebhookEndpoint.objects.get().is_active


def test_it_redelivers_pauses_and_deletes(client, alice, org, make_endpoint):
    endpoint, _ = make_endpoint(org, "https://hooks.example.com/ct")
    delivery = delivery_for(endpoint)
    client.force_login(alice)
    response = client.post(f"{LIST}{endpoint.code}/deliveries/{delivery.code}/redeliver/")
    assert response.status_code == 302
    fresh = WebhookDelivery.objects.exclude(pk=delivery.pk).get()
    assert fresh.event_id == "msg_1" and fresh.attempt == 0 and fresh.next_attempt_at is not None
    client.post(f"{LIST}{endpoint.code}/toggle/")
    endpoint.refresh_from_db()
    assert endpoint.is_active is False
    assert client.post(f"{LIST}{endpoint.code}/delete/").status_code == 302
    assert not WebhookEndpoint.objects.exists() and not WebhookDelivery.objects.exists()


def test_it_requires_csrf_on_posts(alice, org):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    assert browser.post(LIST, {"url": "https://hooks.example.com/ct"}).status_code == 403
    assert not WebhookEndpoint.objects.exists()


def test_it_refuses_get_on_mutations(client, alice, org, make_endpoint):
    endpoint, _ = make_endpoint(org, "https://hooks.example.com/ct")
    client.force_login(alice)
    assert client.get(f"{LIST}{endpoint.code}/delete/").status_code == 405


def test_a_test_delivery_is_queued_signed_like_any_other(client, alice, bob, org, make_endpoint):
    endpoint, _ = make_endpoint(org, "https://hooks.example.com/ct")
    client.force_login(bob)
    assert client.post(f"{LIST}{endpoint.code}/test/").status_code == 403
    client.force_login(alice)
    response = client.post(f"{LIST}{endpoint.code}/test/", follow=True)
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert delivery.event_type == "webhook.test" and delivery.payload["type"] == "webhook.test"
    assert delivery.event_id.startswith("msg_") and delivery.next_attempt_at is not None
    assert "Test delivery" in response.content.decode() and "webhook.test" in response.content.decode()


def test_a_refused_local_url_names_the_setting_that_allows_it(client, alice):
    client.force_login(alice)
    content = client.post(LIST, {"url": "http://localhost:8080/hook"}).content.decode()
    found = re.search(r'<p class="field-error"[^>]*>([^<]*)</p>', content)
    assert found, content
    error = found.group(1)
    assert "COMFYTRACK_WEBHOOK_ALLOW_PRIVATE_HOSTS" in error and not WebhookEndpoint.objects.exists()
