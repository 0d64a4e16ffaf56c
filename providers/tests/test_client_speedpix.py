"""Contract tests for the SpeedPix client: the gateway signature (checked against one computed here from
docs/providers.md, not by the client's code) and the envelope/status mapping on the shared fixtures, through the
production sender over loopback HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from providers.clients.base import ClientOptions, OutputKind, ProviderError, RunStatus, Unsupported
from providers.clients.speedpix import SpeedPixClient
from providers.tests.loopback import BAD_RESPONSES, Request, Response, Router, body_of
from providers.tests.shared import error_of, fixture

SECRET = {"app_key": "204912345", "app_secret": "s3cr3t-app-secret-value"}
TASK = "a153c27e31ed4e0f8c8721af0984ca5a"
NOW = datetime(2025, 6, 17, 8, 0, 0, tzinfo=UTC)
NONCE = "6f1c0d2e-1111-4222-8333-444455556666"
PROGRESS, RESULT, PROMPT = "/scc/comfy_get_progress", "/scc/comfy_get_result", "/scc/comfy_prompt"


def client(routes: dict, config: dict | None = None, **options: Any) -> tuple[SpeedPixClient, Router]:
    router = Router(routes, headers={"x-ca-key": "204912345"})
    c = SpeedPixClient(
        router.serve(),
        SECRET,
        config,
        options=ClientOptions(**options),
        clock=lambda: NOW,
        nonce=lambda: NONCE,
    )
    return c, router


def expected_signature(path: str, body: bytes) -> dict[str, str]:
    """The documented algorithm, written out independently of the client."""
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324 — the protocol's choice
    date = "Tue, 17 Jun 2025 08:00:00 GMT+00:00"
    lines = [
        "POST",
        "application/json; charset=utf-8",
        md5,
        "application/json; charset=utf-8",
        date,
        "x-ca-key:204912345",
        f"x-ca-nonce:{NONCE}",
        "x-ca-signature-method:HmacSHA256",
        "x-ca-timestamp:1750147200000",
        path,
    ]
    digest = hmac.new(b"s3cr3t-app-secret-value", "\n".join(lines).encode(), hashlib.sha256).digest()
    return {
        "content-md5": md5,
        "date": date,
        "x-ca-timestamp": "1750147200000",
        "x-ca-nonce": NONCE,
        "x-ca-signature": base64.b64encode(digest).decode(),
    }


def test_it_signs_requests_as_documented():
    seen: list[Request] = []

    def answer(request: Request) -> Response:
        seen.append(request)
        return Response(200, json=fixture("aliyun-speedpix/comfy_prompt_response.json"))

    c, _ = client({("POST", PROMPT): answer}, {"workflow_id": "wf-EXAMPLE-0001"})
    inputs = {"prompt": "一只猫", "steps": 20}
    assert c.call(c.submit, {}, inputs, {}) == TASK
    request = seen[0]
    body = json.dumps(
        {"workflow_id": "wf-EXAMPLE-0001", "alias_id": "main", "inputs": inputs},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    assert request.content == body  # byte-identical to what was MD5'd, non-ASCII kept as UTF-8
    for name, value in expected_signature(PROMPT, body).items():
        assert request.headers[name] == value, name
    assert request.headers["x-ca-signature-method"] == "HmacSHA256"
    assert request.headers["x-ca-signature-headers"] == "x-ca-timestamp,x-ca-key,x-ca-nonce,x-ca-signature-method"
    assert request.headers["content-type"] == request.headers["accept"] == "application/json; charset=utf-8"
    assert request.headers["x-sp-resource-config-id"] == "default"


def test_it_signs_the_path_the_gateway_sees_under_a_prefixed_base_url():
    seen: list[Request] = []

    def answer(request: Request) -> Response:
        seen.append(request)
        return Response(200, json=fixture("aliyun-speedpix/comfy_get_progress_waiting.json"))

    router = Router({("POST", f"/gw{PROGRESS}"): answer})
    c = SpeedPixClient(f"{router.serve()}/gw", SECRET, clock=lambda: NOW, nonce=lambda: NONCE)
    c.call(c.fetch, TASK)
    body = json.dumps({"taskId": TASK}, separators=(",", ":")).encode()
    assert seen[0].headers["x-ca-signature"] == expected_signature(f"/gw{PROGRESS}", body)["x-ca-signature"]


def test_it_submits_version_ids_and_options():
    c, r = client({("POST", PROMPT): (200, fixture("aliyun-speedpix/comfy_prompt_response.json"))})
    c.call(c.submit, {}, {"a": 1}, {"workflow_id": "wf", "version_id": "v3", "randomise_seeds": True})
    assert body_of(r.requests[0]) == {
        "workflow_id": "wf",
        "version_id": "v3",
        "inputs": {"a": 1},
        "randomise_seeds": True,
    }


def test_it_needs_a_workflow_id():
    c, r = client({})
    with pytest.raises(ProviderError, match="workflow_id") as caught:
        c.call(c.submit, {}, {}, {})
    assert caught.value.permanent and not r.requests


def test_it_reports_gateway_failures_on_submit_with_their_codes():
    c, _ = client({("POST", PROMPT): (200, fixture("aliyun-speedpix/comfy_prompt_error.json"))}, {"workflow_id": "w"})
    with pytest.raises(ProviderError) as caught:
        c.call(c.submit, {}, {}, {})
    for code in ("EXAMPLE_GATEWAY_ERR", "example gateway error", "EXAMPLE_SERVICE_ERR", "example service error"):
        assert code in caught.value.message
    assert caught.value.permanent


def test_it_treats_a_busy_gateway_as_transient():
    busy = {"status": 20, "errCode": "Throttling", "errMessage": "system busy, try again"}
    c, _ = client({("POST", PROMPT): (200, busy)}, {"workflow_id": "w"})
    with pytest.raises(ProviderError) as caught:
        c.call(c.submit, {}, {}, {})
    assert not caught.value.permanent


@pytest.mark.parametrize(
    ("name", "status", "progress"),
    [
        ("waiting", RunStatus.QUEUED, None),
        ("running", RunStatus.RUNNING, 0.45),
    ],
)
def test_it_maps_in_flight_progress(name, status, progress):
    c, r = client({("POST", PROGRESS): (200, fixture(f"aliyun-speedpix/comfy_get_progress_{name}.json"))})
    snap = c.call(c.fetch, TASK)
    assert (snap.status, snap.provider_status, snap.progress) == (status, name, progress)
    assert body_of(r.requests[0]) == fixture("aliyun-speedpix/comfy_get_progress_request.json")


@pytest.mark.parametrize(("value", "expected"), [(45, 0.45), (100, 1.0), (0.3, 0.3), (1, 1.0)])
def test_it_reads_progress_above_one_as_percent(value, expected):
    body = fixture("aliyun-speedpix/comfy_get_progress_running.json")
    body["data"]["progress"] = value
    c, _ = client({("POST", PROGRESS): (200, body)})
    assert c.call(c.fetch, TASK).progress == expected


def test_it_fetches_the_result_of_a_succeeded_task():
    c, r = client(
        {
            ("POST", PROGRESS): (200, fixture("aliyun-speedpix/comfy_get_progress_succeeded.json")),
            ("POST", RESULT): (200, fixture("aliyun-speedpix/comfy_get_result_succeeded.json")),
        }
    )
    snap = c.call(c.fetch, TASK)
    assert (snap.status, snap.provider_status, snap.progress) == (RunStatus.SUCCEEDED, "succeeded", 1.0)
    assert snap.started == datetime(2025, 6, 17, 7, 46, 40, 123000, tzinfo=UTC)
    assert snap.finished is not None and snap.started is not None
    assert (snap.finished - snap.started).total_seconds() == 8.123
    [out] = snap.outputs  # `images` repeats the `poster` field's file: listed once, with its metadata
    assert (out.key, out.filename, out.kind, out.width, out.height) == (
        "result/poster",
        f"{TASK}_00000_.webp",
        OutputKind.IMAGE,
        472,
        708,
    )
    assert out.url_expires == datetime.fromtimestamp(1750150000, UTC)
    assert body_of(r.calls("POST", RESULT)[0]) == fixture("aliyun-speedpix/comfy_get_result_request.json")


@pytest.mark.parametrize(
    ("value", "seconds"), [(8123, 8.123), ("8123", 8.123), (-5, None), ("soon", None), (None, None)]
)
def test_it_reads_the_reported_task_duration_as_usage(value, seconds):
    body = fixture("aliyun-speedpix/comfy_get_result_succeeded.json")
    body["data"]["taskDuration"] = value
    c, _ = client(
        {
            ("POST", PROGRESS): (200, fixture("aliyun-speedpix/comfy_get_progress_succeeded.json")),
            ("POST", RESULT): (200, body),
        }
    )
    snap = c.call(c.fetch, TASK)
    assert snap.status is RunStatus.SUCCEEDED and snap.gpu_seconds == seconds and snap.gpu is None


def test_it_lists_default_images_without_custom_fields():
    body = fixture("aliyun-speedpix/comfy_get_result_succeeded.json")
    body["data"]["result"] = {"caption": "a cat", "count": 2}
    body["data"]["images"].append("https://b.oss.aliyuncs.com/out/second.png")
    c, _ = client(
        {
            ("POST", PROGRESS): (200, fixture("aliyun-speedpix/comfy_get_progress_succeeded.json")),
            ("POST", RESULT): (200, body),
        }
    )
    outputs = c.call(c.fetch, TASK).outputs
    assert [o.key for o in outputs] == [f"images/{TASK}_00000_.webp", "images/second.png"]
    assert outputs[1].url_expires is None  # lifetime undocumented and not in the URL


def test_it_maps_a_failed_result_envelope_to_failed_with_codes():
    c, _ = client(
        {
            ("POST", PROGRESS): (200, fixture("aliyun-speedpix/comfy_get_progress_failed.json")),
            ("POST", RESULT): (200, fixture("aliyun-speedpix/comfy_get_result_failed.json")),
        }
    )
    snap = c.call(c.fetch, TASK)
    assert (snap.status, snap.provider_status) == (RunStatus.FAILED, "failed")
    message = error_of(snap).message
    assert "EXAMPLE_SERVICE_ERR" in message and "example task failure message" in message
    assert "EXAMPLE_GATEWAY_ERR" in message


@pytest.mark.parametrize(
    ("raw", "status"),
    [("canceled", RunStatus.CANCELLED), ("cancelled", RunStatus.CANCELLED), ("preparing", RunStatus.RUNNING)],
)
def test_it_maps_sdk_only_and_unknown_statuses(raw, status):
    body = fixture("aliyun-speedpix/comfy_get_progress_running.json")
    body["data"]["status"] = raw
    c, _ = client({("POST", PROGRESS): (200, body)})
    snap = c.call(c.fetch, TASK)
    assert (snap.status, snap.provider_status) == (status, raw)


def test_it_maps_an_unknown_task_to_unknown():
    missing = {"status": 20, "errCode": "TASK_NOT_FOUND", "errMessage": "task not found"}
    c, _ = client({("POST", PROGRESS): (200, missing)})
    assert c.call(c.fetch, TASK).status is RunStatus.UNKNOWN


def test_it_flags_a_bad_signature_without_leaking_the_string_to_sign():
    message = "Invalid Signature, Server StringToSign:`POST#204912345`"
    refused = Response(403, headers={"X-Ca-Error-Code": "A403IS", "X-Ca-Error-Message": message})
    c, _ = client({("POST", PROGRESS): refused})
    with pytest.raises(ProviderError) as caught:
        c.call(c.fetch, TASK)
    assert caught.value.auth_failed and caught.value.permanent
    assert "Invalid Signature" in caught.value.message and "204912345" not in caught.value.message
    assert "s3cr3t" not in caught.value.message


def test_it_checks_credentials_with_a_dummy_task():
    missing = {"status": 20, "errCode": "TASK_NOT_FOUND", "errMessage": "task not found"}
    c, r = client({("POST", PROGRESS): (200, missing)})
    assert "accepted" in c.call(c.check)
    assert body_of(r.requests[0]) == {"taskId": "comfytrack-credential-check"}
    refused = {"status": 20, "errCode": "InvalidAppKey", "errMessage": "Unauthorized AppKey"}
    c, _ = client({("POST", PROGRESS): (200, refused)})
    with pytest.raises(ProviderError) as caught:
        c.call(c.check)
    assert caught.value.auth_failed


@pytest.mark.parametrize("status", [401, 403])
def test_it_flags_refused_credentials(status):
    c, _ = client({("POST", PROGRESS): (status, {"message": "denied"})})
    with pytest.raises(ProviderError) as caught:
        c.call(c.fetch, TASK)
    assert caught.value.auth_failed and caught.value.permanent


def test_it_honours_retry_after_on_429():
    c, _ = client({("POST", PROGRESS): Response(429, headers={"Retry-After": "3"})})
    with pytest.raises(ProviderError) as caught:
        c.call(c.fetch, TASK)
    assert caught.value.retry_after == 3


@pytest.mark.parametrize(("name", "response"), BAD_RESPONSES, ids=[n for n, _ in BAD_RESPONSES])
def test_it_turns_bad_answers_into_provider_errors(name, response):
    c, _ = client({("POST", PROGRESS): response})
    with pytest.raises(ProviderError) as caught:
        c.call(c.fetch, TASK)
    assert caught.value.message


def test_it_refuses_an_oversized_body():
    c, _ = client(
        {("POST", PROGRESS): (200, {"status": 10, "data": {"status": "running", "message": "x" * 5000}})},
        max_body_bytes=1000,
    )
    with pytest.raises(ProviderError, match="bytes"):
        c.call(c.fetch, TASK)


@pytest.mark.parametrize("body", [{"status": 10}, {"status": 10, "data": {"progress": 1}}, {"status": "ok"}, []])
def test_it_turns_missing_fields_into_provider_errors(body):
    c, _ = client({("POST", PROGRESS): (200, body)})
    with pytest.raises(ProviderError, match="SpeedPix"):
        c.call(c.fetch, TASK)


def test_it_cannot_cancel():
    c, r = client({})
    with pytest.raises(Unsupported):
        c.call(c.cancel, TASK)
    assert not r.requests
