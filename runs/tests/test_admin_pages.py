"""The admin as a person meets it: branded with the organization, a favicon, runs whose history reads
newest first and whose workflow is shown but not editable, a credential form without a false hint."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from runs.models import EventSource, RunEvent, Status

WORKFLOW = {"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk"}}}


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


def test_the_admin_is_branded_with_the_organization_and_has_a_favicon(alice_client, org):
    page = alice_client.get(reverse("admin:index")).content.decode()
    assert "comfytrack administration" in page and "Django administration" not in page
    assert re.search(r'class="admin-org">· Acme<', page)
    assert 'rel="icon"' in page and "favicon.svg" in page
    favicon = alice_client.get("/favicon.ico")
    assert favicon.status_code == 302 and favicon["Location"].endswith("favicon.svg")


def test_a_runs_history_reads_newest_first_and_its_workflow_is_read_only(alice_client, provider, make_run):
    run = make_run(provider, status=Status.SUCCEEDED, workflow=WORKFLOW, inputs={"6.text": "a red fox"})
    now = timezone.now()
    for minutes, (old, new) in enumerate([("pending", "queued"), ("queued", "running"), ("running", "succeeded")]):
        RunEvent.objects.create(
            run=run, source=EventSource.POLL, from_status=old, to_status=new, created=now + timedelta(minutes=minutes)
        )
    page = alice_client.get(reverse("admin:runs_run_change", args=[run.pk])).content.decode()
    history = page[page.index('id="events-group"') :]
    assert re.findall(r'field-to_status">\s*<p>(\w+)', history) == ["Succeeded", "Running", "Queued"]
    assert "a lighthouse at dusk" in page and "a red fox" in page
    assert 'name="workflow"' not in page and 'name="inputs"' not in page
    alice_client.post(reverse("admin:runs_run_change", args=[run.pk]), {"workflow": "{}", "inputs": "{}"})
    run.refresh_from_db()
    assert run.workflow == WORKFLOW


def test_a_new_credentials_hint_is_blank_not_invalid(alice_client, provider):
    page = alice_client.get(reverse("admin:providers_credential_add")).content.decode()
    assert "invalid" not in page


def test_the_run_list_columns_are_short(alice_client, provider, make_run):
    run = make_run(provider, "x" * 80)
    page = alice_client.get(reverse("admin:runs_run_changelist")).content.decode()
    rows = page.split("<tbody>")[1]
    assert "x" * 23 + "…" in rows and ">" + "x" * 80 not in rows and str(run.code) not in rows


def test_a_run_shows_where_its_graph_request_stands(alice_client, provider, make_run):
    run = make_run(provider, status=Status.SUCCEEDED)
    type(run).objects.filter(pk=run.pk).update(graph_attempts=3)
    page = alice_client.get(reverse("admin:runs_run_change", args=[run.pk])).content.decode()
    assert re.search(r'field-graph_attempts">.*?<div class="readonly">3</div>', page, re.S)
    assert "field-graph_due" in page
