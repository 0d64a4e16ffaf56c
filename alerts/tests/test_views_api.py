"""Alert pages and API: create channels and rules, test, mute; scoped to the organization."""

from __future__ import annotations

import pytest

from accounts.models import ApiKey
from alerts.config import create_channel, create_rule
from alerts.models import Channel, Rule


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


MUTE_FORMS = {
    "no minutes": {},
    "blank": {"minutes": ""},
    "a word": {"minutes": "soon"},
    "negative": {"minutes": "-5"},
    "a float": {"minutes": "1e3"},
    "over a year": {"minutes": "525601"},
    "a non-ASCII digit": {"minutes": "\u0663"},
}


@pytest.mark.parametrize("data", MUTE_FORMS.values(), ids=MUTE_FORMS.keys())
def test_the_mute_form_refuses_a_length_it_cannot_read_and_changes_nothing(client, alice, org, data):
    channel = create_channel(org, {"name": "ops", "kind": "email", "emails": "ops@example.com"})
    rule = create_rule(org, {"name": "Failures", "kind": "run_failed", "channels": [str(channel.code)]})
    client.force_login(alice)
    client.post(f"/settings/alerts/rules/{rule.code}/mute/", {"minutes": "60"})
    muted_until = Rule.objects.get(pk=rule.pk).muted_until
    response = client.post(f"/settings/alerts/rules/{rule.code}/mute/", data)
    assert response.status_code == 400 and "Mute for how long?" in response.content.decode()
    assert Rule.objects.get(pk=rule.pk).muted_until == muted_until is not None


def test_the_mute_form_refuses_a_json_body(client, alice, org):
    channel = create_channel(org, {"name": "ops", "kind": "email", "emails": "ops@example.com"})
    rule = create_rule(org, {"name": "Failures", "kind": "run_failed", "channels": [str(channel.code)]})
    client.force_login(alice)
    client.post(f"/settings/alerts/rules/{rule.code}/mute/", {"minutes": "forever"})
    response = client.post(f"/settings/alerts/rules/{rule.code}/mute/", '{"minutes": 0}', "application/json")
    assert response.status_code == 400 and Rule.objects.get(pk=rule.pk).is_muted()


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


# -- editing ---------------------------------------------------------------------------------------


def _slack(org, url: str) -> Channel:
    channel = Channel(organization=org, name="ops", kind="slack")
    channel.secret = {"url": url}
    channel.save()
    return channel


def test_admins_edit_a_channel_on_the_page_and_its_url_stays_secret(client, org, alice, receiver):
    url = receiver.url("/services/T1/B1/secretpart")
    channel = _slack(org, url)
    client.force_login(alice)
    page = client.get(f"/settings/alerts/channels/{channel.code}/edit/").content.decode()
    assert "secretpart" not in page and "…part" in page and 'name="csrfmiddlewaretoken"' in page
    response = client.post(f"/settings/alerts/channels/{channel.code}/edit/", {"name": "ops-renamed", "url": ""})
    assert response.status_code == 302
    channel.refresh_from_db()
    assert channel.name == "ops-renamed" and channel.url == url  # a blank URL keeps the stored one
    new_url = receiver.url("/services/T1/B1/newsecret")
    client.post(f"/settings/alerts/channels/{channel.code}/edit/", {"name": "ops-renamed", "url": new_url})
    channel.refresh_from_db()
    assert channel.url == new_url
    response = client.post(f"/settings/alerts/channels/{channel.code}/edit/", {"name": "x", "url": "ftp://nope"})
    assert response.status_code == 400 and 'data-field="url"' in response.content.decode()
    assert "newsecret" not in response.content.decode()
    channel.refresh_from_db()
    assert (channel.name, channel.url) == ("ops-renamed", new_url)


def test_an_email_channel_edits_its_addresses_and_a_taken_name_is_refused(client, org, alice):
    channel = Channel.objects.create(organization=org, name="mail", kind="email", emails="a@b.test")
    Channel.objects.create(organization=org, name="other", kind="email", emails="c@d.test")
    client.force_login(alice)
    path = f"/settings/alerts/channels/{channel.code}/edit/"
    assert client.post(path, {"name": "mail", "emails": "x@y.test, z@y.test"}).status_code == 302
    channel.refresh_from_db()
    assert channel.addresses == ["x@y.test", "z@y.test"]
    response = client.post(path, {"name": "other", "emails": "x@y.test"})
    assert response.status_code == 400 and 'data-field="name"' in response.content.decode()
    too_long = ",".join(f"{'a' * 60}{i}@example.test" for i in range(20))
    response = client.post(path, {"name": "mail", "emails": too_long})
    assert response.status_code == 400 and 'data-field="emails"' in response.content.decode()
    channel.refresh_from_db()
    assert channel.name == "mail"


def test_admins_edit_a_rule_on_the_page(client, org, alice, provider, make_provider):
    email = Channel.objects.create(organization=org, name="mail", kind="email", emails="a@b.test")
    other = Channel.objects.create(organization=org, name="pager", kind="email", emails="p@b.test")
    rule = Rule.objects.create(organization=org, name="Rate", kind="success_rate", threshold=80, window=20)
    rule.channels.set([email])
    client.force_login(alice)
    path = f"/settings/alerts/rules/{rule.code}/edit/"
    page = client.get(path).content.decode()
    assert 'value="Rate"' in page and 'id="rule-threshold"' in page and 'id="rule-minutes"' not in page
    data = {"name": "Rate (Deploy)", "providers": [str(provider.code)], "channels": [str(other.code)]}
    response = client.post(path, {**data, "threshold": "95", "window": "50", "workflows": ""})
    assert response.status_code == 302 and response["Location"] == f"/settings/alerts/rules/{rule.code}/"
    rule.refresh_from_db()
    assert (rule.name, rule.threshold, rule.window) == ("Rate (Deploy)", 95.0, 50)
    assert list(rule.providers.all()) == [provider] and list(rule.channels.all()) == [other]
    response = client.post(path, {**data, "threshold": "250", "window": "50"})
    assert response.status_code == 400 and 'data-field="threshold"' in response.content.decode()
    assert 'value="250"' in response.content.decode()  # what was typed stays in the form
    response = client.post(path, {**data, "channels": [], "threshold": "90", "window": "50"})
    assert response.status_code == 400 and 'data-field="channels"' in response.content.decode()
    rule.refresh_from_db()
    assert rule.threshold == 95.0 and list(rule.channels.all()) == [other]


@pytest.mark.parametrize("kind", ["success_rate", "run_failed"])
def test_narrowing_a_rule_closes_the_incidents_it_no_longer_watches(client, org, alice, provider, make_provider, kind):
    from alerts.models import Event
    from alerts.recording import open_incident

    elsewhere = make_provider(org, name="Elsewhere")
    channel = Channel.objects.create(organization=org, name="mail", kind="email", emails="a@b.test")
    rule = Rule.objects.create(organization=org, name="Rate", kind=kind)
    rule.channels.set([channel])
    open_incident(rule, f"provider:{provider.pk}", "Rate: Deploy below 80%", "Deploy: 50%")
    open_incident(rule, f"provider:{elsewhere.pk}", "Rate: Elsewhere below 80%", "Elsewhere: 50%")
    client.force_login(alice)
    data = {"name": "Rate", "providers": [str(provider.code)], "channels": [str(channel.code)]}
    assert client.post(f"/settings/alerts/rules/{rule.code}/edit/", data).status_code == 302
    open_keys = set(rule.incidents.filter(closed=None).values_list("key", flat=True))
    assert open_keys == {f"provider:{provider.pk}"}
    note = Event.objects.get(kind="recovered")
    assert note.text.startswith("No longer watched") and note.notified is not None  # recorded, not sent


def test_the_api_edits_channels_and_rules(client, org, provider, key, receiver):
    url = receiver.url("/services/T1/B1/secretpart")
    channel = api(client, "post", "/channels", key, {"name": "d", "kind": "discord", "url": url}).json()
    edited = api(client, "patch", f"/channels/{channel['id']}", key, {"name": "discord-ops"})
    assert edited.status_code == 200 and edited.json()["name"] == "discord-ops"
    assert "secretpart" not in edited.content.decode() and edited.json()["target"].endswith("…part")
    assert Channel.objects.get().url == url
    assert api(client, "get", f"/channels/{channel['id']}", key).json()["name"] == "discord-ops"
    bad = api(client, "patch", f"/channels/{channel['id']}", key, {"kind": "email"})
    assert bad.status_code == 422 and bad.json() == {
        "detail": "A channel's kind cannot change: add a new channel of that kind.",
        "code": "invalid",
        "field": "kind",
    }
    body = {"name": "Slow", "kind": "success_rate", "channels": [channel["id"]], "threshold": 90, "window": 10}
    rule_id = api(client, "post", "/rules", key, body).json()["id"]
    edited = api(client, "patch", f"/rules/{rule_id}", key, {"threshold": 75.5, "providers": ["Deploy"]})
    assert edited.status_code == 200
    assert edited.json()["summary"] == "success rate below 75.5% over the last 10 runs"
    assert edited.json()["providers"] == [str(provider.code)] and edited.json()["name"] == "Slow"
    assert edited.json()["channels"] == [channel["id"]]
    bad = api(client, "patch", f"/rules/{rule_id}", key, {"channels": []})
    assert bad.status_code == 422 and bad.json()["field"] == "channels"
    bad = api(client, "patch", f"/rules/{rule_id}", key, {"kind": "run_failed"})
    assert bad.status_code == 422 and bad.json()["field"] == "kind"
    assert Rule.objects.get().threshold == 75.5


HOSTILE = [
    ({"name": "a\x00b"}, "name"),
    ({"name": "x" * 100_000}, "name"),
    ({"name": 12}, "name"),
    ({"name": ["x"]}, "name"),
    ({"name": ""}, "name"),
    ({"url": "https://" + "a" * 5000}, "url"),
    ({"url": {"nested": True}}, "url"),
    ({"emails": True}, "emails"),
]
HOSTILE_RULES = [
    ({"threshold": "lots"}, "threshold"),
    ({"threshold": 1e308}, "threshold"),
    ({"window": -5}, "window"),
    ({"window": 10**30}, "window"),
    ({"minutes": 2.5}, "minutes"),
    ({"channels": "not a list"}, "channels"),
    ({"channels": [str(i) for i in range(101)]}, "channels"),
    ({"providers": [{"id": 1}]}, "providers.0"),
    ({"workflows": ["x" * 10_000]}, "workflows"),
    ({"workflows": ["0123456789abcdef\x00"]}, "workflows"),
    ({"name": None}, "name"),
]


@pytest.mark.parametrize("body, field", HOSTILE)
def test_hostile_channel_patches_are_422(client, org, key, body, field):
    channel = _slack(org, "https://hooks.slack.com/services/T1/B1/keep")
    response = api(client, "patch", f"/channels/{channel.code}", key, body)
    assert response.status_code == 422, response.content
    assert response.json()["field"] == field and set(response.json()) >= {"detail", "code", "field"}
    channel.refresh_from_db()
    assert (channel.name, channel.url) == ("ops", "https://hooks.slack.com/services/T1/B1/keep")


@pytest.mark.parametrize("body, field", HOSTILE_RULES)
def test_hostile_rule_patches_are_422(client, org, key, body, field):
    channel = Channel.objects.create(organization=org, name="mail", kind="email", emails="a@b.test")
    rule = Rule.objects.create(organization=org, name="ours", kind="success_rate")
    rule.channels.set([channel])
    response = api(client, "patch", f"/rules/{rule.code}", key, body)
    assert response.status_code == 422, response.content
    assert response.json()["field"] == field
    rule.refresh_from_db()
    assert (rule.name, rule.threshold, rule.window, rule.workflows) == ("ours", 80.0, 20, [])


def test_it_hides_other_orgs_from_editing(client, org, charlie, other_org):
    channel = _slack(org, "https://hooks.slack.com/services/T1/B1/keep")
    rule = Rule.objects.create(organization=org, name="ours", kind="run_failed")
    rule.channels.set([channel])
    their_key = ApiKey.issue(other_org, "theirs")[1]
    assert api(client, "patch", f"/channels/{channel.code}", their_key, {"name": "theirs"}).status_code == 404
    assert api(client, "get", f"/channels/{channel.code}", their_key).status_code == 404
    response = api(client, "patch", f"/rules/{rule.code}", their_key, {"name": "theirs"})
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    client.force_login(charlie)
    assert client.get(f"/settings/alerts/channels/{channel.code}/edit/").status_code == 404
    assert client.post(f"/settings/alerts/channels/{channel.code}/edit/", {"name": "theirs"}).status_code == 404
    assert client.get(f"/settings/alerts/rules/{rule.code}/edit/").status_code == 404
    assert client.post(f"/settings/alerts/rules/{rule.code}/edit/", {"name": "theirs"}).status_code == 404
    assert Channel.objects.get().name == "ops" and Rule.objects.get().name == "ours"


def test_viewers_and_members_cannot_edit(client, org, bob, alice):
    from accounts.models import Membership

    channel = Channel.objects.create(organization=org, name="mail", kind="email", emails="a@b.test")
    rule = Rule.objects.create(organization=org, name="ours", kind="run_failed")
    rule.channels.set([channel])
    client.force_login(bob)
    assert client.get(f"/settings/alerts/rules/{rule.code}/edit/").status_code == 403
    assert client.post(f"/settings/alerts/rules/{rule.code}/edit/", {"name": "x"}).status_code == 403
    assert client.get(f"/settings/alerts/channels/{channel.code}/edit/").status_code == 403
    assert "/edit/" not in client.get("/settings/alerts/").content.decode()
    read_only = ApiKey.issue(org, "ro", read_only=True)[1]
    assert api(client, "patch", f"/rules/{rule.code}", read_only, {"name": "x"}).status_code == 403
    # A member writes runs but, as on the pages, does not change alerts (here through the session).
    Membership.objects.filter(organization=org, user=bob).update(role="member")
    response = client.patch(f"/api/v1/alerts/rules/{rule.code}", data={"name": "x"}, content_type="application/json")
    assert response.status_code == 403
    assert Rule.objects.get().name == "ours"


def test_edit_pages_need_the_csrf_token(org, alice):
    from django.test import Client

    rule = Rule.objects.create(organization=org, name="ours", kind="run_failed")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert strict.post(f"/settings/alerts/rules/{rule.code}/edit/", {"name": "x"}).status_code == 403
    assert Rule.objects.get().name == "ours"


def test_the_pages_show_each_channels_last_message_and_each_incidents_length(client, org, alice):
    from datetime import timedelta

    from django.utils import timezone

    from alerts.models import Message
    from alerts.recording import close_incident, open_incident

    now = timezone.now()
    works = Channel.objects.create(organization=org, name="works", kind="email", emails="a@b.test")
    broken = Channel.objects.create(organization=org, name="broken", kind="email", emails="c@b.test")
    Channel.objects.create(organization=org, name="unused", kind="email", emails="d@b.test")
    rule = Rule.objects.create(organization=org, name="ours", kind="run_failed")
    rule.channels.set([works, broken])
    Message.objects.create(channel=works, rule=rule, subject="s", text="t", sent=now)
    Message.objects.create(channel=broken, rule=rule, subject="s", text="t", sent=now - timedelta(hours=1))
    Message.objects.create(channel=broken, rule=rule, subject="s", text="t", last_error="Connection refused <b>")
    open_incident(rule, "", "ours: a run failed", "first", now=now - timedelta(hours=2))
    open_incident(rule, "", "ours: a run failed", "again", now=now - timedelta(hours=1))
    close_incident(rule, "", "recovered", now=now)
    client.force_login(alice)
    page = client.get("/settings/alerts/").content.decode()
    rows = {name: page[page.index(f"<td>{name}</td>") :].split("</tr>")[0] for name in ("works", "broken", "unused")}
    assert "sent " in rows["works"] and "none yet" in rows["unused"]
    assert "not sent" in rows["broken"] and "Connection refused &lt;b&gt;" in rows["broken"]
    page = client.get(f"/settings/alerts/rules/{rule.code}/").content.decode()
    incident = page[page.index('<tr class="incident closed">') :].split("</tr>")[0]
    assert "2\xa0hours" in incident and "<td>3</td>" in incident  # fired, again, recovered


@pytest.mark.parametrize("name", ["evil\nBcc: x@evil.test", "tab\there", "esc\x1b[31m"])
def test_names_with_control_characters_are_422(client, org, key, name):
    channel = Channel.objects.create(organization=org, name="mail", kind="email", emails="a@b.test")
    created = api(client, "post", "/channels", key, {"name": name, "kind": "email", "emails": "a@b.test"})
    assert created.status_code == 422 and created.json()["field"] == "name"
    rule = api(client, "post", "/rules", key, {"name": name, "kind": "run_failed", "channels": [str(channel.code)]})
    assert rule.status_code == 422 and rule.json()["field"] == "name"
    renamed = api(client, "patch", f"/channels/{channel.code}", key, {"name": name})
    assert renamed.status_code == 422 and Channel.objects.get(pk=channel.pk).name == "mail"
