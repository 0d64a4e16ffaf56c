"""Hostile input through every form and API entry point: a clear 4xx (or a form/filter error), never a
500, on SQLite and PostgreSQL alike (the suite runs on both)."""

from __future__ import annotations

import base64
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import ApiKey
from alerts.config import create_channel, create_rule
from alerts.models import Channel, Rule
from comfytrack.api import api as api_root
from insights.models import Workflow
from runs.models import Run

pytestmark = pytest.mark.django_db

WORKFLOW = {"3": {"class_type": "KSampler", "inputs": {"seed": 1}}}
DEEP = "[" * 100_000 + "]" * 100_000  # Python's json module gives up with a RecursionError
DEEP_OBJECT = '{"a":' * 5_000 + "1" + "}" * 5_000
# A moment whose UTC is before year 1 (or after 9999): fine for Python, an OverflowError in SQLite.
EDGE_MOMENTS = ["0001-01-01T00:00+23:59", "9999-12-31T23:59-23:59"]


def cursor_at(moment: str) -> str:
    raw = f"{moment}|00000000-0000-0000-0000-000000000000".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.fixture
def member(client, alice):
    client.force_login(alice)
    return client


def api(client, method: str, path: str, key: str, body: str | bytes | None = None, **headers):
    send = getattr(client, method)
    if body is None:
        return send(f"/api/v1{path}", HTTP_X_API_KEY=key, **headers)
    return send(f"/api/v1{path}", body, content_type="application/json", HTTP_X_API_KEY=key, **headers)


# -- the dashboard's submit form ----------------------------------------------------------------------

SUBMIT_CASES = {
    "deeply nested workflow": {"workflow": DEEP},
    "deeply nested workflow object": {"workflow": DEEP_OBJECT},
    "deeply nested inputs": {"workflow": json.dumps(WORKFLOW), "inputs": DEEP},
    "deeply nested inputs object": {"workflow": json.dumps(WORKFLOW), "inputs": DEEP_OBJECT},
    "infinite number in inputs": {"workflow": json.dumps(WORKFLOW), "inputs": '{"3.seed": 1e400}'},
    "NaN in the workflow": {"workflow": '{"3": {"class_type": "KSampler", "inputs": {"seed": NaN}}}'},
    "NUL in the workflow": {"workflow": '{"3": {"class_type": "K\\u0000", "inputs": {}}}'},
    "NUL in a workflow key": {"workflow": '{"3\\u0000": {"class_type": "K", "inputs": {}}}'},
    "NUL in the inputs": {"workflow": json.dumps(WORKFLOW), "inputs": '{"3.seed": "a\\u0000"}'},
    "raw NUL in the pasted text": {"workflow": json.dumps(WORKFLOW).replace("KSampler", "K\x00Sampler")},
}


@pytest.mark.parametrize("fields", SUBMIT_CASES.values(), ids=SUBMIT_CASES.keys())
def test_the_submit_form_answers_hostile_json_with_a_form_error(member, provider, fields):
    response = member.post("/runs/new/", {"provider": str(provider.code), **fields})
    assert response.status_code == 400
    assert response.context["error"]
    assert not Run.objects.exists()


def test_the_submit_form_answers_a_deeply_nested_upload_with_a_form_error(member, provider):
    upload = SimpleUploadedFile("workflow.json", DEEP.encode(), content_type="application/json")
    response = member.post("/runs/new/", {"provider": str(provider.code), "workflow_file": upload})
    assert response.status_code == 400 and "nested" in response.context["error"]


def test_the_submit_form_refuses_a_nul_in_the_idempotency_key(member, provider):
    fields = {"provider": str(provider.code), "workflow": json.dumps(WORKFLOW), "idempotency_key": "a\x00b"}
    response = member.post("/runs/new/", fields)
    assert response.status_code == 400 and "NUL" in response.context["error"]
    assert not Run.objects.exists()


@pytest.mark.parametrize("name", ["a\x00b", "\x00"])
def test_an_api_key_name_with_nul_is_refused_with_a_message(member, name):
    response = member.post("/settings/api-keys/new/", {"name": name}, follow=True)
    assert response.status_code == 200
    assert any("NUL" in str(m) for m in response.context["messages"])
    assert not ApiKey.objects.exists()


# -- filters and cursors on the pages ----------------------------------------------------------------


@pytest.mark.parametrize("page", ["/runs/", "/gallery/"])
@pytest.mark.parametrize("moment", EDGE_MOMENTS)
@pytest.mark.parametrize("param", ["created_after", "created_before", "cursor"])
def test_pages_report_out_of_range_moments_as_filter_errors(member, provider, make_run, page, moment, param):
    make_run(provider)
    value = cursor_at(moment) if param == "cursor" else moment
    response = member.get(page, {param: value})
    assert response.status_code == 200
    assert response.context["errors"]


# -- the API ---------------------------------------------------------------------------------------


API_SUBMIT_CASES = {
    "deeply nested body": DEEP,
    "deeply nested workflow": '{"provider": "Deploy", "workflow": ' + DEEP_OBJECT + "}",
    "infinite number in inputs": json.dumps({"provider": "Deploy", "workflow": WORKFLOW})[:-1]
    + ', "inputs": {"3.seed": 1e400}}',
    "NaN in the workflow": '{"provider": "Deploy", "workflow": {"3": {"class_type": "K", "inputs": {"s": NaN}}}}',
    "NUL in the workflow": json.dumps({"provider": "Deploy", "workflow": {"3": {"class_type": "K\x00"}}}),
    "NUL in an inputs key": json.dumps({"provider": "Deploy", "workflow": WORKFLOW, "inputs": {"a\x00": 1}}),
    "lone surrogate in the workflow": '{"provider": "Deploy", "workflow": {"3": {"class_type": "K\\ud800"}}}',
}


@pytest.mark.parametrize("body", API_SUBMIT_CASES.values(), ids=API_SUBMIT_CASES.keys())
def test_the_api_answers_hostile_json_with_422(client, key, provider, body):
    response = api(client, "post", "/runs", key, body)
    assert response.status_code == 422, response.content
    assert response.json()["detail"] and response.json()["code"] == "invalid"
    assert not Run.objects.exists()


# A lone surrogate ("\ud800") parses to a str that cannot be encoded: list items reached the database.
SURROGATE_CASES = {
    "bulk track ids": ("/runs/track", '{"provider": "Deploy", "external_ids": ["ok", "a\\ud800"]}', "external_ids"),
    "alert rule providers": (
        "/alerts/rules",
        '{"name": "r", "kind": "run_failed", "providers": ["\\udfff"]}',
        "providers",
    ),
    "an object key": ("/runs", '{"provider": "Deploy", "workflow": {"\\ud800": {}}}', "workflow"),
}


@pytest.mark.parametrize(("path", "body", "field"), SURROGATE_CASES.values(), ids=SURROGATE_CASES.keys())
def test_the_api_answers_a_lone_surrogate_with_422(client, key, provider, path, body, field):
    response = api(client, "post", path, key, body)
    assert response.status_code == 422, response.content
    assert response.json()["field"] == field and "surrogate" in response.json()["detail"]
    assert not Run.objects.exists()


def test_the_api_answers_a_body_over_the_upload_limit_with_413(client, key, provider, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = json.dumps({"provider": "Deploy", "workflow": WORKFLOW, "inputs": {"pad": "x" * 20_000}})
    response = api(client, "post", "/runs", key, body)
    assert response.status_code == 413
    assert response.json()["code"] == "too_large" and "10000" in response.json()["detail"].replace(",", "")


def test_the_api_refuses_a_nul_in_the_idempotency_key(client, key, provider):
    response = api(
        client,
        "post",
        "/runs",
        key,
        json.dumps({"provider": "Deploy", "workflow": WORKFLOW}),
        HTTP_IDEMPOTENCY_KEY="a\x00b",
    )
    assert response.status_code in (201, 422)  # NUL stripped or refused, never a 500
    assert response.status_code != 500


@pytest.mark.parametrize("moment", EDGE_MOMENTS)
@pytest.mark.parametrize("param", ["created_after", "created_before", "cursor"])
@pytest.mark.parametrize("extra", [{}, {"status": "queued"}], ids=["plain list", "filtered list"])
def test_the_api_answers_out_of_range_moments_with_422(client, key, provider, make_run, moment, param, extra):
    make_run(provider)
    value = cursor_at(moment) if param == "cursor" else moment
    response = client.get("/api/v1/runs", {param: value, **extra}, HTTP_X_API_KEY=key)
    assert response.status_code == 422, response.content
    assert response.json()["field"] == param


# -- every API body of the wrong shape ------------------------------------------------------------------

# Every body the API takes is an object; django-ninja reads anything else as an object with no fields.
WRONG_SHAPES = {
    "a list": "[]",
    "a list of objects": '[{"minutes": 5, "name": "x"}]',
    "a string": '"minutes"',
    "a number": "5",
    "true": "true",
    "null": "null",
    "invalid JSON": '{"minutes": 5',
    "not UTF-8": b'{"name": "\xff"}',
}
# The operations that document a request body, read from the API's own schema: a new one is covered.
BODY_OPERATIONS = sorted(
    (method.upper(), path)
    for path, operations in api_root.get_openapi_schema()["paths"].items()
    for method, operation in operations.items()
    if "requestBody" in operation
)


@pytest.fixture
def path_values(org, alice, provider, make_run):
    """A real object for each path parameter, so a wrong body, not a missing object, is what is refused."""
    channel = create_channel(org, {"name": "ops", "kind": "email", "emails": "ops@example.com"})
    rule = create_rule(org, {"name": "Failures", "kind": "run_failed", "channels": [str(channel.code)]})
    run = make_run(provider, workflow=WORKFLOW)
    return {
        "run_id": run.code,
        "rule_id": rule.code,
        "channel_id": channel.code,
        "fingerprint": run.workflow_fingerprint,
    }


def state(org) -> list:
    """What a wrongly accepted body would change: the runs, the rules and channels, the workflows' names."""
    return [
        list(Run.objects.values_list("code", "status")),
        list(Rule.objects.values_list("name", "muted_until", "minutes")),
        list(Channel.objects.values_list("name", "emails")),
        list(Workflow.objects.values_list("fingerprint", "label")),
    ]


@pytest.mark.parametrize("body", WRONG_SHAPES.values(), ids=WRONG_SHAPES.keys())
@pytest.mark.parametrize(("method", "template"), BODY_OPERATIONS, ids=[" ".join(o) for o in BODY_OPERATIONS])
def test_every_api_body_of_the_wrong_shape_is_a_422(client, key, org, path_values, method, template, body):
    before = state(org)
    path = template.removeprefix("/api/v1").format(**path_values)
    response = api(client, method.lower(), path, key, body)
    assert response.status_code == 422, response.content
    assert response.json()["code"] == "invalid" and response.json()["field"] == "body"
    assert response.json()["detail"].startswith("The request body ")
    assert state(org) == before


@pytest.mark.parametrize(("method", "template"), BODY_OPERATIONS, ids=[" ".join(o) for o in BODY_OPERATIONS])
def test_every_api_body_over_the_upload_limit_is_a_413(client, key, org, path_values, settings, method, template):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    before = state(org)
    path = template.removeprefix("/api/v1").format(**path_values)
    response = api(client, method.lower(), path, key, json.dumps({"name": "x" * 20_000}))
    assert response.status_code == 413, response.content
    assert response.json()["code"] == "too_large"
    assert state(org) == before


@pytest.mark.parametrize("body", WRONG_SHAPES.values(), ids=WRONG_SHAPES.keys())
def test_the_comfydeploy_hook_answers_a_body_of_the_wrong_shape_with_400(client, provider, body):
    token = provider.issue_webhook_token()
    response = client.post(f"/api/v1/hooks/comfydeploy/{provider.code}/{token}", body, "application/json")
    assert response.status_code == 400, response.content
    assert {"detail", "code", "field"} <= set(response.json()) and response.json()["code"] == "bad_request"
    assert not Run.objects.exists()
