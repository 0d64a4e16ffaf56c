"""Submitting a workflow from the dashboard."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from providers.fake.state import QUEUED
from runs.models import Run

WORKFLOW = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}}}


@pytest.fixture
def local(org, make_provider, fake):
    fake.state.default_script = ((0.0, QUEUED),)
    return make_provider(org, name="Local", kind="comfyui", base_url=fake.base_url("comfyui"), secret={})


def test_it_submits_and_lands_on_the_run(client, alice, local):
    client.force_login(alice)
    form = client.get("/runs/new/")
    key = form.context["idempotency_key"]
    response = client.post(
        "/runs/new/",
        {
            "provider": str(local.code),
            "workflow": json.dumps(WORKFLOW),
            "inputs": '{"1.width": 32}',
            "idempotency_key": key,
        },
    )
    run = Run.objects.get()
    assert response["Location"] == f"/runs/{run.code}/"
    assert run.origin == "dashboard" and run.external_id and run.inputs == {"1.width": 32}


def test_a_double_submitted_form_makes_one_run(client, alice, local):
    client.force_login(alice)
    data = {"provider": str(local.code), "workflow": json.dumps(WORKFLOW), "idempotency_key": "abc"}
    first = client.post("/runs/new/", data)
    second = client.post("/runs/new/", data)
    assert Run.objects.count() == 1 and first["Location"] == second["Location"]


def test_it_accepts_an_uploaded_file(client, alice, local):
    client.force_login(alice)
    upload = SimpleUploadedFile("wf.json", json.dumps(WORKFLOW).encode(), content_type="application/json")
    response = client.post("/runs/new/", {"provider": str(local.code), "workflow_file": upload})
    assert response.status_code == 302 and Run.objects.count() == 1


@pytest.mark.parametrize(
    ("workflow", "message"),
    [
        ("", "Paste a workflow"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"nodes": [], "links": []}', "UI format"),
        ('{"1": {"inputs": {}}}', "has no class_type"),
        ("{" + " " * 1_000_001 + "}", "over 1 MB"),
    ],
)
def test_it_explains_bad_workflows(client, alice, local, workflow, message):
    client.force_login(alice)
    response = client.post("/runs/new/", {"provider": str(local.code), "workflow": workflow})
    assert response.status_code == 400 and message in response.content.decode()
    assert not Run.objects.exists()


def test_it_explains_bad_inputs_and_unknown_providers(client, alice, local):
    client.force_login(alice)
    bad_inputs = client.post(
        "/runs/new/", {"provider": str(local.code), "workflow": json.dumps(WORKFLOW), "inputs": "[1]"}
    )
    assert bad_inputs.status_code == 400 and b"Inputs must be a JSON object" in bad_inputs.content
    unknown = client.post("/runs/new/", {"provider": "nope", "workflow": json.dumps(WORKFLOW)})
    assert unknown.status_code == 400 and b"Choose one of this organization" in unknown.content


def test_a_refused_submission_is_a_failed_run_with_the_reason(client, alice, org, make_provider):
    dead = make_provider(org, name="Dead", kind="comfyui", base_url="http://127.0.0.1:9", secret={})
    client.force_login(alice)
    response = client.post("/runs/new/", {"provider": str(dead.code), "workflow": json.dumps(WORKFLOW)}, follow=True)
    assert response.status_code == 200 and b"did not accept the run" in response.content


def test_viewers_cannot_submit(client, bob, local):
    client.force_login(bob)
    assert client.get("/runs/new/").status_code == 403
    assert client.post("/runs/new/", {"provider": str(local.code), "workflow": json.dumps(WORKFLOW)}).status_code == 403
    assert not Run.objects.exists()


def test_it_hides_other_orgs(client, charlie, local):
    client.force_login(charlie)
    assert b"Local" not in client.get("/runs/new/").content
    response = client.post("/runs/new/", {"provider": str(local.code), "workflow": json.dumps(WORKFLOW)})
    assert response.status_code == 400 and not Run.objects.exists()
