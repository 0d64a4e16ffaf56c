"""Contract tests for the AWS ESD client against the shared aws-esd fixtures, through the production sender over
loopback HTTP."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from providers.clients.aws_esd import MAX_PROMPT_CHARS, AwsEsdClient, prompt_graph
from providers.clients.base import ClientOptions, OutputKind, ProviderError, RunStatus, Unsupported
from providers.tests.loopback import BAD_RESPONSES, Request, Response, Router, body_of, provider_server
from providers.tests.shared import error_of, fixture, recorded

BASE = f"{provider_server().url}/prod"
SECRET = {"api_key": "esd-key-abcdef123456", "username": "alice"}
RUN_ID = "3de9ce5b-f687-4626-9c2b-8595e3835c45"
PATH = f"/prod/executes/{RUN_ID}"
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def client(routes: dict, config: dict | None = None, **options: Any) -> tuple[AwsEsdClient, Router]:
    router = Router(routes, headers={"x-api-key": "esd-key-abcdef123456", "username": "alice"})
    router.serve()
    c = AwsEsdClient(BASE, SECRET, config, options=ClientOptions(**options))
    return c, router


def execute(name: str = "success", **changes: object) -> dict:
    body = fixture(f"aws-esd/get_execute_{name}.json")
    body["data"].update(changes)
    return body


def test_it_submits_with_a_client_generated_prompt_id():
    seen = {}

    def answer(request: Request) -> Response:
        seen.update(body_of(request))
        reply = fixture("aws-esd/create_execute_response_201_async.json")
        reply["data"]["prompt_id"] = seen["prompt_id"]
        return Response(201, json=reply)

    c, _ = client({("POST", "/prod/executes"): answer}, {"endpoint_name": "comfy-async-EXAMPLE"})
    external_id = c.call(c.submit, recorded("workflow_minimal.json"), {"1.color": 7}, {})
    assert UUID4.match(external_id) and seen["prompt_id"] == external_id
    assert seen["need_sync"] is False and seen["endpoint_name"] == "comfy-async-EXAMPLE"
    assert seen["prompt"]["1"]["inputs"]["color"] == 7
    assert set(fixture("aws-esd/create_execute_request.json")) >= set(seen)


def test_it_takes_the_endpoint_from_the_options_and_accepts_a_real_time_200():
    reply = fixture("aws-esd/create_execute_response_201_async.json")
    c, r = client({("POST", "/prod/executes"): (200, reply)})
    assert c.call(c.submit, recorded("workflow_minimal.json"), {}, {"endpoint_name": "rt"}) == RUN_ID
    assert body_of(r.requests[0])["endpoint_name"] == "rt"


def test_it_needs_an_endpoint_name():
    c, r = client({})
    with pytest.raises(ProviderError, match="endpoint_name") as caught:
        c.call(c.submit, recorded("workflow_minimal.json"), {}, {})
    assert caught.value.permanent and not r.requests


def test_it_reports_gateway_validation_errors_on_submit():
    c, _ = client(
        {("POST", "/prod/executes"): (400, fixture("aws-esd/gateway_error_400_validation.json"))},
        {"endpoint_name": "e"},
    )
    with pytest.raises(ProviderError, match="need_sync") as caught:
        c.call(c.submit, recorded("workflow_minimal.json"), {}, {})
    assert caught.value.permanent and caught.value.status_code == 400


def test_it_maps_created_to_queued_with_naive_iso_as_utc():
    c, _ = client({("GET", PATH): (200, fixture("aws-esd/get_execute_created.json"))})
    snap = c.call(c.fetch, RUN_ID)
    assert (snap.status, snap.provider_status) == (RunStatus.QUEUED, "created")
    assert snap.created == snap.queued == datetime(2024, 7, 30, 8, 15, 42, 123456, tzinfo=UTC)
    assert snap.started is None and snap.finished is None and snap.outputs == ()


def test_it_maps_created_with_a_start_time_to_running():
    c, _ = client({("GET", PATH): (200, execute("created", start_time="2024-07-30T08:15:43.000000"))})
    snap = c.call(c.fetch, RUN_ID)
    assert snap.status is RunStatus.RUNNING and snap.started == datetime(2024, 7, 30, 8, 15, 43, tzinfo=UTC)


def test_it_maps_success_with_presigned_outputs():
    c, _ = client({("GET", PATH): (200, fixture("aws-esd/get_execute_success.json"))})
    snap = c.call(c.fetch, RUN_ID)
    assert (snap.status, snap.provider_status) == (RunStatus.SUCCEEDED, "success")
    assert snap.finished is not None and snap.queued is not None
    assert snap.finished - snap.queued == timedelta(seconds=49, microseconds=864198)
    [out] = snap.outputs
    assert (out.key, out.filename, out.kind) == ("output/probe_00001_.png", "probe_00001_.png", OutputKind.IMAGE)
    assert out.url.startswith("https://esd-bucket-EXAMPLE.s3.amazonaws.com/comfy/output/")
    assert out.url_expires == datetime(2024, 7, 30, 9, 16, 32, tzinfo=UTC)  # X-Amz-Date + X-Amz-Expires


def test_it_assumes_an_hour_when_the_url_states_no_expiry():
    url = f"https://bucket.s3.amazonaws.com/comfy/temp/{RUN_ID}/sub/p.png"
    c, _ = client({("GET", PATH): (200, execute(output_files=[], temp_files=[url, "/not-presigned.png"]))})
    before = datetime.now(UTC)
    [out] = c.call(c.fetch, RUN_ID).outputs
    assert out.key == "temp/sub/p.png" and out.filename == "p.png" and out.url_expires is not None
    assert before + timedelta(seconds=3599) <= out.url_expires <= datetime.now(UTC) + timedelta(seconds=3600)


@pytest.mark.parametrize("raw", ["failed", "fail"])
def test_it_maps_failures_with_the_message(raw):
    c, _ = client({("GET", PATH): (200, execute("failed", status=raw))})
    snap = c.call(c.fetch, RUN_ID)
    assert (snap.status, snap.provider_status) == (RunStatus.FAILED, raw)
    assert error_of(snap).message == "the environment is not ready valid[0] is false, need to resync"
    assert snap.finished == datetime(2024, 7, 30, 8, 16, 5, 1, tzinfo=UTC)


def test_it_treats_unknown_statuses_as_in_flight():
    c, _ = client({("GET", PATH): (200, execute("created", status="preparing"))})
    snap = c.call(c.fetch, RUN_ID)
    assert (snap.status, snap.provider_status) == (RunStatus.RUNNING, "preparing")


def test_it_maps_404_to_unknown():
    c, _ = client({("GET", PATH): (404, fixture("aws-esd/get_execute_not_found_404.json"))})
    snap = c.call(c.fetch, RUN_ID)
    assert (snap.status, snap.provider_status) == (RunStatus.UNKNOWN, "not_found")


@pytest.mark.parametrize("status", [401, 403])
def test_it_flags_refused_keys(status):
    c, _ = client({("GET", PATH): (status, fixture("aws-esd/gateway_error_403.json"))})
    with pytest.raises(ProviderError, match="Forbidden") as caught:
        c.call(c.fetch, RUN_ID)
    assert caught.value.permanent and caught.value.auth_failed
    assert "esd-key" not in caught.value.message


def test_it_honours_retry_after_on_429():
    c, _ = client({("GET", PATH): Response(429, json={"message": "Too Many Requests"}, headers={"Retry-After": "12"})})
    with pytest.raises(ProviderError) as caught:
        c.call(c.fetch, RUN_ID)
    assert caught.value.retry_after == 12 and not caught.value.permanent


@pytest.mark.parametrize(("name", "response"), BAD_RESPONSES, ids=[n for n, _ in BAD_RESPONSES])
def test_it_turns_bad_answers_into_provider_errors(name, response):
    c, _ = client({("GET", PATH): response})
    with pytest.raises(ProviderError) as caught:
        c.call(c.fetch, RUN_ID)
    assert caught.value.message


def test_it_refuses_an_oversized_body():
    c, _ = client({("GET", PATH): (200, execute(message="x" * 4000))}, max_body_bytes=2000)
    with pytest.raises(ProviderError, match="bytes"):
        c.call(c.fetch, RUN_ID)


@pytest.mark.parametrize("data", [None, "a string", {"prompt_id": RUN_ID}, {"status": "success", "output_files": 3}])
def test_it_turns_missing_fields_into_provider_errors(data):
    c, _ = client({("GET", PATH): (200, {"statusCode": 200, "data": data, "message": "OK"})})
    with pytest.raises(ProviderError, match="AWS"):
        c.call(c.fetch, RUN_ID)


def test_it_cannot_cancel():
    c, r = client({})
    with pytest.raises(Unsupported, match="cancel"):
        c.call(c.cancel, RUN_ID)
    assert not r.requests and not AwsEsdClient.supports_cancel


def test_it_checks_with_a_one_item_list():
    c, r = client({("GET", "/prod/executes"): (200, fixture("aws-esd/list_executes.json"))})
    assert "accepted" in c.call(c.check)
    assert r.requests[0].url.query["limit"] == "1"


def test_it_needs_a_base_url_and_an_api_key():
    with pytest.raises(ProviderError, match="base URL"):
        AwsEsdClient(None, SECRET)
    with pytest.raises(ProviderError, match="api_key"):
        AwsEsdClient(BASE, {"username": "api"})
    assert AwsEsdClient(BASE, {"api_key": "k"}).auth_headers() == {"x-api-key": "k", "username": "api"}


def test_it_reads_the_graph_from_the_prompt_text_of_a_finished_run():
    """`prompt_params.prompt` is Python's str() of the graph; it is read from the answer that finishes the run."""
    c, _ = client({("GET", PATH): (200, fixture("aws-esd/get_execute_success.json"))})
    assert c.call(c.fetch, RUN_ID).workflow == {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 16711680}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "probe"}},
    }
    c, _ = client({("GET", PATH): (200, fixture("aws-esd/get_execute_created.json"))})
    assert c.call(c.fetch, RUN_ID).workflow is None


def test_it_takes_a_prompt_stored_as_json_too():
    graph = {"1": {"class_type": "EmptyImage", "inputs": {}}}
    c, _ = client({("GET", PATH): (200, execute(prompt_params={"prompt": graph}))})
    assert c.call(c.fetch, RUN_ID).workflow == graph


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('touch /tmp/comfytrack-esd-pwned')",  # a call: never run
        "{'1': open('/etc/passwd').read()}",
        "[" * 100_000 + "]" * 100_000,  # nesting deeper than the parser takes
        "{'1': {'class_type': 'X', 'inputs': {}}}" + " " * MAX_PROMPT_CHARS,  # too long to read
        "{'1': ",  # cut short
        "['not', 'a', 'graph']",
        "",
    ],
)
def test_it_reads_hostile_prompt_text_as_no_graph(text):
    assert prompt_graph({"prompt": text}) is None


@pytest.mark.parametrize("params", [None, "prompt", ["prompt"], {"prompt": 7}])
def test_it_keeps_the_status_when_prompt_params_are_odd(params):
    c, _ = client({("GET", PATH): (200, execute(prompt_params=params))})
    snap = c.call(c.fetch, RUN_ID)
    assert snap.status is RunStatus.SUCCEEDED and snap.workflow is None
