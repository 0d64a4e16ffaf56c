"""The API's contract: one error shape, one JSON formatting, Idempotency-Key honesty, submissions the
provider refuses (a 422 naming nodes and inputs, no run), against the fake ComfyUI over loopback HTTP."""

from __future__ import annotations

import uuid

from providers.fake import state as S
from runs.models import Run
from runs.tests.api_helpers import get, post

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}
MISSING_FILE = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "does_not_exist.png"}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


def prompts_posted(fake) -> int:
    return sum(1 for kind, method, path in fake.state.requests if method == "POST" and path.endswith("/prompt"))


# -- one error shape -----------------------------------------------------------------------------------


def test_every_error_body_has_detail_code_and_field(client, key, local):
    answers = {
        401: get(client, "/runs"),
        404: get(client, f"/runs/{uuid.uuid4()}", key),
        422: get(client, "/runs?limit=0", key),
    }
    for status, response in answers.items():
        body = response.json()
        assert response.status_code == status, body
        assert {"detail", "code", "field"} <= set(body) and body["detail"], body
    assert answers[401].json()["field"] is None and answers[404].json()["field"] is None
    assert answers[422].json()["field"] == "limit"


# -- one JSON formatting ----------------------------------------------------------------------------


def test_get_and_post_answers_are_written_alike(client, key, local, fake):
    fake_run = fake.add_run("comfyui", script=((0.0, S.QUEUED),))
    created = post(client, "/runs/track", key, {"provider": "Local", "external_id": fake_run.external_id})
    assert created.status_code == 201
    run_id = created.json()["id"]
    read = get(client, f"/runs/{run_id}", key)
    # Byte for byte: the same renderer, the same separators, the same datetime text.
    assert created.content == read.content
    assert b'": ' not in created.content and b'", "' not in created.content
    error = get(client, f"/runs/{uuid.uuid4()}", key)
    assert error.content.startswith(b'{"detail":')


# -- Idempotency-Key ------------------------------------------------------------------------------------


def test_an_idempotency_key_reused_with_another_body_is_a_422(client, key, local, fake):
    body = {"provider": "Local", "workflow": WORKFLOW, "inputs": {"1.width": 128}}
    first = post(client, "/runs", key, body, **{"Idempotency-Key": "nightly-1"})
    assert first.status_code == 201, first.json()
    again = post(client, "/runs", key, body, **{"Idempotency-Key": "nightly-1"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = post(client, "/runs", key, {**body, "inputs": {"1.width": 256}}, **{"Idempotency-Key": "nightly-1"})
    assert other.status_code == 422
    assert other.json()["field"] == "Idempotency-Key" and "different request body" in other.json()["detail"]
    assert Run.objects.count() == 1 and prompts_posted(fake) == 1


# -- submissions the provider refuses -----------------------------------------------------------------------


def test_a_workflow_comfyui_refuses_is_a_422_with_its_node_errors_and_no_run(client, key, local, fake):
    response = post(client, "/runs", key, {"provider": "Local", "workflow": MISSING_FILE})
    body = response.json()
    assert response.status_code == 422, body
    assert body["code"] == "rejected" and body["field"] == "1.image"
    assert "Prompt outputs failed validation" in body["detail"]
    assert body["errors"] == [
        {
            "field": "1.image",
            "detail": "Node 1 (LoadImage): Custom validation failed for node: image - Invalid image file: "
            "does_not_exist.png.",
        }
    ]
    assert prompts_posted(fake) == 1 and not Run.objects.exists()


def test_an_unknown_node_type_is_a_422_naming_the_node(client, key, local):
    workflow = {**WORKFLOW, "5": {"class_type": "NoSuchNode", "inputs": {}}}
    response = post(client, "/runs", key, {"provider": "Local", "workflow": workflow})
    assert response.status_code == 422 and response.json()["field"] == "5"
    assert "NoSuchNode does not exist" in response.json()["detail"] and not Run.objects.exists()


def test_inputs_naming_a_node_not_in_the_workflow_are_a_422_before_any_provider_call(client, key, local, fake):
    body = {"provider": "Local", "workflow": WORKFLOW, "inputs": {"99.text": "a cat", "1.width": 32}}
    response = post(client, "/runs", key, body)
    assert response.status_code == 422
    assert response.json()["field"] == "99.text" and "'99'" in response.json()["detail"]
    assert fake.state.requests == [] and not Run.objects.exists()


def test_the_dashboard_shows_the_form_again_with_the_node_errors(client, alice, local, fake):
    client.force_login(alice)
    import json

    response = client.post(
        "/runs/new/",
        {"provider": str(local.code), "workflow": json.dumps(MISSING_FILE), "inputs": ""},
    )
    page = response.content.decode()
    assert response.status_code == 422
    assert "Local refused the workflow." in page and "<code>1.image</code>" in page
    assert "does_not_exist.png" in page and 'name="workflow"' in page
    assert not Run.objects.exists()


def test_the_run_page_shows_the_workflow_as_it_ran(client, alice, key, local, fake):
    body = {"provider": "Local", "workflow": WORKFLOW, "inputs": {"1.width": 777, "1": {"height": 555}}}
    run_id = post(client, "/runs", key, body).json()["id"]
    client.force_login(alice)
    page = client.get(f"/runs/{run_id}/").content.decode()
    table = page[page.index('<table class="nodes">') :]
    assert "<code>width</code>=777" in table and "<code>height</code>=555" in table
    assert "<code>width</code>=64" not in table
    # The provider got the same graph.
    submitted = fake.state.get("comfyui", Run.objects.get().external_id).workflow
    assert submitted["1"]["inputs"]["width"] == 777 and submitted["1"]["inputs"]["height"] == 555
