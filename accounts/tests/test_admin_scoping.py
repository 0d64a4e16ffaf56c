"""Every registered ModelAdmin, walked as a staff owner of one organization: no page, choice list,
autocomplete answer or accepted form value ever involves another organization's objects."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django import forms
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import models
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from accounts.models import ApiKey, Membership, Organization
from providers.models import Credential, Provider
from runs.models import Run, RunEvent, RunOutput
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db

MARK = "globexsecret"  # in every name of the other organization's objects


def objects_of(org: Organization, tag: str, member) -> dict[type, object]:
    """One object of every scoped model in `org`, each named with `tag`."""
    provider = Provider.objects.create(organization=org, name=f"{tag} provider", kind="comfydeploy")
    credential = Credential(provider=provider, name=f"{tag} credential")
    credential.set_secret({"token": "t" * 20})
    credential.save()
    run = Run.objects.create(organization=org, provider=provider, credential=credential, external_id=f"{tag}-run")
    output = RunOutput.objects.create(run=run, key=f"{tag}-key", filename=f"{tag}.png")
    event = RunEvent.objects.create(run=run, source="poll", to_status="queued", detail=tag)
    key, _ = ApiKey.issue(org, f"{tag} key")
    endpoint = WebhookEndpoint.objects.create(organization=org, url=f"https://{tag}.example/hook")
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, event_id=f"{tag}-e", event_type="run.x", payload={})
    return {
        Organization: org,
        get_user_model(): member,
        Membership: Membership.objects.get(organization=org, user=member),
        Provider: provider,
        Credential: credential,
        Run: run,
        RunOutput: output,
        RunEvent: event,
        ApiKey: key,
        WebhookEndpoint: endpoint,
        WebhookDelivery: delivery,
    }


@pytest.fixture
def world(org, alice):
    other = Organization.objects.create(name=f"{MARK} org", slug="globex")
    stranger = get_user_model().objects.create_user(f"{MARK}_user", password="password", is_staff=True)
    Membership.objects.create(organization=other, user=stranger, role="owner")
    return objects_of(org, "acme", alice), objects_of(other, MARK, stranger)


class FormFields(HTMLParser):
    """The name/value pairs a browser would submit for the admin form (the one with `id$=_form`)."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, list[str]] = {}
        self._select: str | None = None
        self._textarea: str | None = None
        self._in_form = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and (a.get("id") or "").endswith("_form"):
            self._in_form = True
        if tag == "option" and self._select and "selected" in a:
            self.data[self._select].append(a.get("value") or "")
        if not self._in_form or not a.get("name"):
            return
        name = a["name"]
        if tag == "input" and a.get("type") not in ("submit", "button", "file", "image"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.data.setdefault(name, []).append(a.get("value") or ("on" if a.get("type") == "checkbox" else ""))
        elif tag == "select":
            self._select = name
            self.data.setdefault(name, [])
        elif tag == "textarea":
            self._textarea = name
            self.data[name] = [""]

    def handle_data(self, data):
        if self._textarea:
            self.data[self._textarea][-1] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def form_data(html: str) -> dict[str, list[str]]:
    parser = FormFields()
    parser.feed(html)
    return parser.data


def registered_models() -> list[type[models.Model]]:
    """Every model with a ModelAdmin on the admin site, found through its public API."""
    return [model for model in apps.get_models() if admin.site.is_registered(model)]


def admin_url(model, view: str, *args) -> str | None:
    try:
        return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)
    except NoReverseMatch:
        return None


def choice_fields(response) -> list[tuple[str, type]]:
    """(posted name, related model) of every model-choice field of the form and its inline formsets."""
    found = [
        (name, field.queryset.model)
        for name, field in response.context["adminform"].form.fields.items()
        if isinstance(field, forms.ModelChoiceField) and field.queryset is not None
    ]
    for inline in response.context.get("inline_admin_formsets", []):
        formset = inline.formset
        for form in formset.forms[:1]:
            found += [
                (f"{form.prefix}-{name}", field.queryset.model)
                for name, field in form.fields.items()
                if isinstance(field, forms.ModelChoiceField)
                and field.queryset is not None
                and name not in (formset.fk.name, "id")
            ]
    return found


def test_no_admin_form_offers_or_accepts_another_organizations_objects(client, world, alice):
    ours, theirs = world
    client.force_login(alice)
    walked, refused = [], []
    for model in registered_models():
        pages = []
        add = admin_url(model, "add")
        if add:
            # Preselection through the query string (`?retry_of=<pk>`) must not show their objects either.
            params = {f.name: theirs[f.related_model].pk for f in model._meta.fields if f.related_model in theirs}
            pages.append((add, params))
        if model in ours:
            change = admin_url(model, "change", ours[model].pk)
            assert change, model  # every registered ModelAdmin has a change view
            pages.append((change, {}))
        changelist = admin_url(model, "changelist")
        for url, params in [*pages, (changelist, {})]:
            response = client.get(url, params)
            assert response.status_code in (200, 302, 403), (url, response.status_code)
            assert MARK not in response.content.decode().lower(), f"{url} shows another organization's object"
        for url, _ in pages:
            response = client.get(url)
            if response.status_code != 200 or "adminform" not in response.context:
                continue
            walked.append(url)
            data = form_data(response.content.decode())
            for name, related in choice_fields(response):
                if related not in theirs:
                    continue
                posted = client.post(url, {**data, name: [str(theirs[related].pk)]})
                assert posted.status_code == 200, f"{url} accepted another organization's {name}"
                assert posted.context["errors"], f"{url} shows no error for another organization's {name}"
                refused.append((url, name))
    # The walk reached the forms that matter (so a silently skipped form cannot pass this test).
    assert {name for _, name in refused} >= {"organization", "provider", "credential", "retry_of", "created_by", "user"}
    assert len(walked) >= 8, walked
    assert not Run.objects.filter(retry_of=theirs[Run]).exists()
    assert not Membership.objects.filter(organization=ours[Organization], user=theirs[get_user_model()]).exists()


def test_the_retry_of_autocomplete_lists_only_the_own_organizations_runs(client, world, alice):
    ours, theirs = world
    client.force_login(alice)
    params = {"app_label": "runs", "model_name": "run", "field_name": "retry_of", "term": ""}
    response = client.get(reverse("admin:autocomplete"), params)
    assert response.status_code == 200
    ids = {result["id"] for result in response.json()["results"]}
    assert str(ours[Run].pk) in ids and str(theirs[Run].pk) not in ids


def test_a_run_added_in_the_admin_keeps_its_parts_in_one_organization(client, world, alice, org):
    ours, theirs = world
    client.force_login(alice)
    data = {
        "organization": org.pk,
        "provider": ours[Provider].pk,
        "credential": ours[Credential].pk,
        "external_id": "added-in-admin",
        "origin": "tracked",
        "created_0": timezone.now().date().isoformat(),
        "retry_of": theirs[Run].pk,
        "_save": "Save",
    }
    response = client.post(admin_url(Run, "add"), data)
    assert response.status_code == 200 and "retry_of" in response.context["adminform"].form.errors
    assert not Run.objects.filter(external_id="added-in-admin").exists()
