"""Alert pages and API: create channels and rules, test, mute; scoped to the organization."""

from __future__ import annotations

import pytest

from accounts.models import ApiKey
from alerts.models import Channel, Rule


@pytest.fixture
def key(org, alice):
    return ApiKey.issue(org, "ci", created_by=alice)[1]


def api(client, method, path, key, data=None):
    kwargs = {"data": data, "content_type": "application/json"} if data is not None else {}
    return getattr(client, method)(f"/api/v1/alerts{path}", headers={"X-API-Key": key}, **kwargs)


def test_admins_create_channels_and_rules_on_the_page_and_send_a_test(client, alice, provider, receiver):
    client.force_login(alice)
    assert client.get("/settings/alerts/").status_code == 200
    url = receiver.url("/services/T1/B1/secretpart")
    response = client.post("/settings/alerts/channels/new/", {"name": "ops", "kind": "slack", "url": url})
    assert response.status_code == 302
    channel = Channel.objects.get()
    page = client.get("/settings/alerts/").content.decode()
    assert "secretpart" not in page and "…part" in page  # the URL is never shown back whole
    response = client.post(
        "/settings/alerts/rules/new/",
        {"name": "Failures", "kind": "run_failed", "providers": [str(provider.code)], "channels": [str(channel.code)]},
    )
    rule = Rule.objects.get()
    assert response.status_code == 302 and list(rule.providers.all()) == [provider]
    response = client.post(f"/settings/alerts/rules/{rule.code}/test/", follow=True)
    assert "ops: test message sent." in response.content.decode() and len(receiver.posts) == 1
    client.post(f"/settings/alerts/rules/{rule.code}/mute/", {"minutes": "60"})
    rule.refresh_from_db()
    assert rule.is_muted()
    client.post(f"/settings/alerts/rules/{rule.code}/mute/", {"minutes": "0"})
    rule.refresh_from_db()
    assert not rule.is_muted()


@pytest.mark.parametrize(
    "data, field",
    [
        ({"name": "x", "kind": "slack", "url": "http://hooks.slack.com/x"}, "url"),
        ({"name": "x", "kind": "email", "emails": "not-an-address"}, "emails"),
        ({"name": "x", "kind": "pager"}, "kind"),
        ({"name": "", "kind": "email", "emails": "a@b.test"}, "name"),
        ({"name": "x", "kind": "webhook", "endpoint": "nope"}, "endpoint"),
    ],
)
def test_bad_channels_are_refused_with_the_field(client, alice, key, data, field):
    client.force_login(alice)
    response = client.post("/settings/alerts/channels/new/", data)
    assert response.status_code == 400 and f'data-field="{field}"' in response.content.decode()
    response = api(client, "post", "/channels", key, data)
    assert response.status_code == 422 and response.json()["field"] == field
    assert not Channel.objects.exists()


def test_the_api_manages_rules(client, org, provider, key, receiver):
    channel = api(client, "post", "/channels", key, {"name": "d", "kind": "discord", "url": receiver.url("/x")}).json()
    assert channel["target"].startswith("127.0.0.1:") and channel["kind"] == "discord"
    body = {"name": "Slow", "kind": "success_rate", "channels": [channel["id"]], "threshold": 90, "window": 10}
    created = api(client, "post", "/rules", key, body)
    assert created.status_code == 201 and created.json()["summary"] == "success rate below 90% over the last 10 runs"
    rule_id = created.json()["id"]
    assert [r["id"] for r in api(client, "get", "/rules", key).json()] == [rule_id]
    muted = api(client, "post", f"/rules/{rule_id}/mute", key, {"minutes": 30}).json()
    assert muted["muted_until"] is not None
    assert api(client, "post", f"/rules/{rule_id}/test", key).json() == [
        {"channel": channel["id"], "ok": True, "error": None}
    ]
    bad = api(client, "post", "/rules", key, {**body, "providers": ["Nope"]})
    assert bad.status_code == 422 and bad.json()["field"] == "providers"
    assert api(client, "delete", f"/rules/{rule_id}", key).status_code == 204
    assert api(client, "delete", f"/channels/{channel['id']}", key).status_code == 204


def test_it_hides_other_orgs(client, org, alice, charlie, other_org, provider):
    channel = Channel.objects.create(organization=org, name="ours", kind="email", emails="a@b.test")
    rule = Rule.objects.create(organization=org, name="ours", kind="run_failed")
    rule.channels.set([channel])
    their_key = ApiKey.issue(other_org, "theirs")[1]
    assert api(client, "get", "/rules", their_key).json() == []
    assert api(client, "get", f"/rules/{rule.code}", their_key).status_code == 404
    assert api(client, "post", f"/rules/{rule.code}/test", their_key).status_code == 404
    assert api(client, "delete", f"/channels/{channel.code}", their_key).status_code == 404
    body = {"name": "x", "kind": "run_failed", "channels": [str(channel.code)]}
    assert api(client, "post", "/rules", their_key, body).json()["field"] == "channels"
    client.force_login(charlie)
    assert client.get(f"/settings/alerts/rules/{rule.code}/").status_code == 404
    assert client.post(f"/settings/alerts/rules/{rule.code}/mute/", {"minutes": "60"}).status_code == 404
    assert "ours" not in client.get("/settings/alerts/").content.decode()


def test_viewers_read_but_do_not_change(client, org, bob):
    rule = Rule.objects.create(organization=org, name="ours", kind="run_failed")
    client.force_login(bob)
    assert client.get(f"/settings/alerts/rules/{rule.code}/").status_code == 200
    assert client.post(f"/settings/alerts/rules/{rule.code}/test/").status_code == 403
    assert client.post("/settings/alerts/channels/new/", {"name": "x", "kind": "email"}).status_code == 403
    read_only = ApiKey.issue(org, "ro", read_only=True)[1]
    assert api(client, "post", f"/rules/{rule.code}/mute", read_only, {"minutes": 5}).status_code == 403
