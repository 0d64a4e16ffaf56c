"""The admin: endpoints scoped to the user's organizations, the secret shown once and never listed."""

from __future__ import annotations

from webhooks.models import WebhookDelivery, WebhookEndpoint


def test_it_creates_an_endpoint_with_a_secret_shown_once(client, alice, org):
    client.force_login(alice)
    response = client.post(
        "/admin/webhooks/webhookendpoint/add/",
        {"organization": org.pk, "url": "https://hooks.example.com/a", "description": "", "events": "[]",
         "is_active": "on"},
        follow=True,
    )  # fmt: skip
    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.signing_secret in response.content.decode()
    listing = client.get("/admin/webhooks/webhookendpoint/").content.decode()
    assert "hooks.example.com/a" in listing and endpoint.signing_secret not in listing


def test_it_hides_other_orgs(client, charlie, org, make_endpoint):
    endpoint, _ = make_endpoint(org, "https://hooks.example.com/a")
    WebhookDelivery.objects.create(endpoint=endpoint, event_id="msg_1", event_type="run.failed", payload={})
    client.force_login(charlie)
    assert "hooks.example.com" not in client.get("/admin/webhooks/webhookendpoint/").content.decode()
    assert client.get(f"/admin/webhooks/webhookendpoint/{endpoint.pk}/change/").status_code in (302, 403, 404)
    assert "run.failed" not in client.get("/admin/webhooks/webhookdelivery/").content.decode()
