"""Admin scoping: org admins see only their organization; secrets are write-only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from providers.models import Credential

SECRET = "cd-secret-token-1234"


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def theirs(other_org, make_provider):
    return make_provider(other_org, name="Their Deploy", secret={"token": "their-secret-token-9999"})


def change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def test_it_lists_only_my_organizations_providers_and_credentials(alice_client, provider, theirs):
    for name in ("provider", "credential"):
        page = alice_client.get(reverse(f"admin:providers_{name}_changelist"))
        assert page.status_code == 200
        assert "Deploy" in page.text and "Their Deploy" not in page.text


def test_it_hides_other_orgs_objects_by_url(alice_client, theirs, make_run):
    run = make_run(theirs)
    for obj in (theirs, theirs.credentials.get(), run, theirs.organization):
        page = alice_client.get(change_url(obj), follow=True)
        assert "Their Deploy" not in page.text
        assert "doesn’t exist" in page.text or page.status_code in (403, 404)
        assert alice_client.post(change_url(obj), {"name": "hijacked"}).status_code in (302, 403, 404)
    assert theirs.credentials.get().name == "default"


def test_a_superuser_sees_every_organization(client, admin_user, provider, theirs):
    client.force_login(admin_user)
    page = client.get(reverse("admin:providers_provider_changelist"))
    assert "Their Deploy" in page.text and "Deploy" in page.text


def test_a_viewer_cannot_use_the_admin(client, bob, provider):
    bob.is_staff = True
    bob.save()
    client.force_login(bob)
    assert client.get(reverse("admin:providers_credential_changelist")).status_code == 403


def test_the_credential_page_never_renders_the_secret(alice_client, provider):
    credential = provider.credentials.get()
    page = alice_client.get(change_url(credential))
    assert page.status_code == 200
    assert SECRET not in page.text
    assert "…1234" in page.text


def test_blank_secret_fields_keep_the_stored_value_and_new_ones_replace_it(alice_client, provider):
    credential = provider.credentials.get()
    data = {"provider": provider.pk, "name": "default", "is_active": "on"}
    assert alice_client.post(change_url(credential), data).status_code == 302
    assert Credential.objects.get(pk=credential.pk).plain_secret() == {"token": SECRET}
    assert alice_client.post(change_url(credential), {**data, "secret_token": "new-token-5678"}).status_code == 302
    assert Credential.objects.get(pk=credential.pk).plain_secret() == {"token": "new-token-5678"}


def test_adding_a_credential_validates_the_kinds_secret_keys(alice_client, provider):
    url = reverse("admin:providers_credential_add")
    data = {"provider": provider.pk, "name": "second", "is_active": "on"}
    page = alice_client.post(url, {**data, "secret_api_key": "x"})
    assert "does not use: api_key" in page.text
    page = alice_client.post(url, data)
    assert "needs: token" in page.text
    assert alice_client.post(url, {**data, "secret_token": "tok-2-abcd"}).status_code == 302
    assert provider.credentials.get(name="second").plain_secret() == {"token": "tok-2-abcd"}


def test_an_org_admin_cannot_attach_a_credential_to_another_orgs_provider(alice_client, theirs):
    url = reverse("admin:providers_credential_add")
    page = alice_client.post(url, {"provider": theirs.pk, "name": "x", "secret_token": "abc12345"})
    assert page.status_code == 200 and "Select a valid choice" in page.text
    assert not theirs.credentials.filter(name="x").exists()


def test_the_test_connection_action_reports_failure_without_secrets(alice_client, org, make_provider):
    local = make_provider(org, name="Local", kind="comfyui", base_url="http://127.0.0.1:9", secret={})
    page = alice_client.post(
        reverse("admin:providers_provider_changelist"),
        {"action": "check_connection_action", "_selected_action": [local.pk]},
        follow=True,
    )
    assert "could not connect" in page.text


def test_api_keys_added_in_the_admin_are_shown_once(alice_client, org):
    from accounts.models import ApiKey

    page = alice_client.post(reverse("admin:accounts_apikey_add"), {"organization": org.pk, "name": "bot"}, follow=True)
    key = ApiKey.objects.get()
    plain = page.text.split("will not be shown again: ")[1].split("<")[0].strip()
    assert ApiKey.objects.authenticate(plain) == key
    assert plain not in alice_client.get(change_url(key)).text


@pytest.mark.parametrize("kind", ["comfydeploy", "comfycloud", "comfyui", "aws_esd", "speedpix"])
def test_the_test_connection_action_checks_the_real_api(alice_client, org, make_provider, fake, kind):
    good = make_provider(org, name=f"{kind} ok", kind=kind, base_url=fake.base_url(kind), secret=fake.secret(kind))
    url = reverse("admin:providers_credential_changelist")
    credential = good.credentials.get()
    page = alice_client.post(
        url, {"action": "check_connection_action", "_selected_action": [credential.pk]}, follow=True
    )
    assert 'class="success"' in page.text
    credential.refresh_from_db()
    assert credential.last_ok is not None and credential.failing_since is None


def test_a_refused_credential_is_flagged_failing_without_leaking_it(alice_client, org, make_provider, fake):
    bad = make_provider(org, name="bad", base_url=fake.base_url("comfydeploy"), secret={"token": "wrong-token-0000"})
    credential = bad.credentials.get()
    page = alice_client.post(
        reverse("admin:providers_credential_changelist"),
        {"action": "check_connection_action", "_selected_action": [credential.pk]},
        follow=True,
    )
    assert "check the credential" in page.text and "wrong-token-0000" not in page.text
    credential.refresh_from_db()
    assert credential.failing_since is not None and "wrong-token-0000" not in credential.last_error
