"""ComfyDeploy client contract tests: the production sender over loopback HTTP, answers from the shared fixtures."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from providers.clients.base import ClientOptions, OutputKind, ProviderError, RunSnapshot, RunStatus
from providers.clients.comfydeploy import ComfyDeployClient, parse_webhook, url_expiry
from providers.tests.loopback import Request, Response, closed_port_url, provider_server, serve
from providers.tests.shared import error_of, fixture

BASE = f"{provider_server().url}/api"
TOKEN = "cd-test-token-123456"
RUN_ID = "b5c9a0c4-3f1e-4a8e-9d0b-6d2f6a1e7c42"
Handler = Callable[[Request], Response]


def client(handler: Handler, config: dict[str, Any] | None = None, **options: Any) -> ComfyDeployClient:
    serve(handler)
    return ComfyDeployClient(BASE, {"token": TOKEN}, config, options=ClientOptions(**options))


def get_run(body: Any, status: int = 200, **headers: str) -> Handler:
    """A handler for GET /run/{RUN_ID} that checks method, URL and auth."""

    def handler(request: Request) -> Response:
        assert request.method == "GET"
        assert str(request.url) == f"{BASE}/run/{RUN_ID}"
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        if isinstance(body, bytes):
            return Response(status, content=body, headers=headers)
        return Response(status, json=body, headers=headers)

    return handler


def fetch(body: Any, status: int = 200, **headers: str) -> RunSnapshot:
    c = client(get_run(body, status, **headers))
    return c.call(c.fetch, RUN_ID)


def fetch_error(body: Any, status: int = 200, headers: dict[str, str] | None = None, **options: Any) -> ProviderError:
    c = client(get_run(body, status, **(headers or {})), **options)
    with pytest.raises(ProviderError) as caught:
        c.call(c.fetch, RUN_ID)
    assert caught.value.message
    assert TOKEN not in caught.value.message
    return caught.value


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("not_started", RunStatus.QUEUED),
        ("queued", RunStatus.QUEUED),
        ("running", RunStatus.RUNNING),
        ("success", RunStatus.SUCCEEDED),
        ("failed", RunStatus.FAILED),
        ("cancelled", RunStatus.CANCELLED),
        ("timeout", RunStatus.TIMED_OUT),
    ],
)
def test_it_maps_every_status_fixture(name: str, status: RunStatus) -> None:
    body = fixture(f"comfydeploy/get_run_{name}.json")
    snapshot = fetch(body)
    assert snapshot.status == status
    assert snapshot.provider_status == body["status"]
    assert snapshot.external_id == RUN_ID


@pytest.mark.parametrize(("raw", "status"), [("started", RunStatus.RUNNING), ("uploading", RunStatus.RUNNING)])
def test_it_maps_the_other_in_flight_strings(raw: str, status: RunStatus) -> None:
    body = {**fixture("comfydeploy/get_run_running.json"), "status": raw}
    assert fetch(body).status == status


@pytest.mark.parametrize(
    ("started_at", "status"), [(None, RunStatus.QUEUED), ("2025-10-20T09:15:11.002Z", RunStatus.RUNNING)]
)
def test_it_handles_unknown_status_strings_as_in_flight(started_at: str | None, status: RunStatus) -> None:
    body = {**fixture("comfydeploy/get_run_queued.json"), "status": "warming-up", "started_at": started_at}
    snapshot = fetch(body)
    assert snapshot.status == status
    assert snapshot.provider_status == "warming-up"
    assert not snapshot.status.is_terminal


def test_it_reads_timestamps_as_aware_utc_and_durations_add_up() -> None:
    snapshot = fetch(fixture("comfydeploy/get_run_success.json"))
    assert snapshot.created == datetime(2025, 10, 20, 9, 15, 2, 123000, tzinfo=UTC)
    for value in (snapshot.created, snapshot.queued, snapshot.started, snapshot.finished):
        assert value is not None
        assert value.utcoffset() == timedelta(0)
    assert snapshot.queued and snapshot.started and snapshot.finished
    assert (snapshot.started - snapshot.queued).total_seconds() == pytest.approx(1.546)
    assert (snapshot.finished - snapshot.started).total_seconds() == pytest.approx(10.843)


def test_it_reads_progress_and_live_status() -> None:
    snapshot = fetch(fixture("comfydeploy/get_run_running.json"))
    assert snapshot.progress == pytest.approx(0.45)
    assert snapshot.live_status == "Executing KSampler"
    assert snapshot.finished is None


def test_it_reads_the_queue_position_while_queued() -> None:
    assert fetch(fixture("comfydeploy/get_run_queued.json")).queue_position == 0


def test_it_reads_public_outputs_without_expiry() -> None:
    snapshot = fetch(fixture("comfydeploy/get_run_success.json"))
    (output,) = snapshot.outputs
    item = fixture("comfydeploy/get_run_success.json")["outputs"][0]["data"]["images"][0]
    assert output.filename == "ComfyUI_00001_.png"
    assert output.kind == OutputKind.IMAGE
    assert output.url == item["url"]
    assert output.content_type == "image/png"
    assert output.url_expires is None  # is_public: true — a plain S3 URL
    assert output.key.startswith("9d1e2f3a-4b5c-4d6e-8f7a-0b1c2d3e4f5a/")


def success_with(items: dict[str, list[Any]], node_id: str | None = None) -> dict[str, Any]:
    body = fixture("comfydeploy/get_run_success.json")
    body["outputs"][0]["data"] = items
    body["outputs"][0]["node_id"] = node_id
    return body


def test_it_derives_expiry_from_a_presigned_url() -> None:
    url = (
        "https://b.s3.us-east-1.amazonaws.com/outputs/runs/x/a.png"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20251020T091522Z&X-Amz-Expires=3600&X-Amz-Signature=abc"
    )
    item = {"url": url, "type": "output", "filename": "a.png", "is_public": False}
    (output,) = fetch(success_with({"images": [item]}, node_id="9")).outputs
    assert output.url_expires == datetime(2025, 10, 20, 10, 15, 22, tzinfo=UTC)
    assert output.node_id == "9"


def test_it_assumes_an_hour_for_private_urls_without_amz_params() -> None:
    item = {"url": "https://cdn.example/v.mp4?sig=1", "type": "output", "filename": "v.mp4", "is_public": False}
    before = datetime.now(UTC)
    (output,) = fetch(success_with({"gifs": [item]})).outputs
    assert output.kind == OutputKind.VIDEO
    assert output.url_expires is not None
    assert before + timedelta(seconds=3590) <= output.url_expires <= datetime.now(UTC) + timedelta(seconds=3600)


def test_it_reads_files_and_mesh_and_skips_text_and_broken_items() -> None:
    items: dict[str, list[Any]] = {
        "files": [{"url": "https://x/a.json", "type": "output", "filename": "a.json"}],
        "mesh": [{"url": "https://x/m.glb", "type": "output", "filename": "m.glb"}, {"filename": "no-url.glb"}],
        "text": ["hello"],
    }
    outputs = fetch(success_with(items)).outputs
    assert [(o.filename, o.kind) for o in outputs] == [("a.json", OutputKind.TEXT), ("m.glb", OutputKind.MESH)]


def test_it_derives_an_error_from_live_status_and_text_outputs() -> None:
    body = fixture("comfydeploy/get_run_failed.json")
    body["outputs"] = [{"id": "o1", "data": {"text": ["CUDA out of memory"]}}]
    error = fetch(body).error
    assert error is not None
    assert error.node_type == "KSampler"
    assert "KSampler" in error.message
    assert "CUDA out of memory" in error.message


def test_it_explains_a_timeout() -> None:
    snapshot = fetch(fixture("comfydeploy/get_run_timeout.json"))
    assert "24 hours" in error_of(snapshot).message
    assert fetch(fixture("comfydeploy/get_run_success.json")).error is None


def test_it_returns_unknown_for_404() -> None:
    snapshot = fetch(fixture("comfydeploy/error_404_run_not_found.json"), status=404)
    assert snapshot.status == RunStatus.UNKNOWN
    assert snapshot.provider_status == "not_found"


@pytest.mark.parametrize("status", [401, 403])
def test_it_flags_auth_failures_as_permanent(status: int) -> None:
    error = fetch_error({"detail": "Access denied. "}, status)
    assert error.permanent
    assert error.auth_failed
    assert error.status_code == status


def test_it_honours_retry_after_on_429() -> None:
    error = fetch_error({"detail": "rate limited"}, 429, {"Retry-After": "7"})
    assert not error.permanent
    assert error.retry_after == 7


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_it_treats_5xx_as_transient(status: int) -> None:
    error = fetch_error({"detail": "boom"}, status)
    assert not error.permanent
    assert not error.auth_failed


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>502 Bad Gateway</body></html>",
        b"{'status': not json",
        json.dumps(fixture("comfydeploy/get_run_success.json")).encode()[:300],
        b"[]",
        b'{"id": "x"}',
        b'{"status": 7}',
    ],
    ids=["html", "malformed", "truncated", "list", "missing-status", "wrong-type"],
)
def test_it_turns_bad_bodies_into_provider_errors(body: bytes) -> None:
    error = fetch_error(body, 200)
    assert not error.permanent


def test_it_refuses_an_oversized_body() -> None:
    error = fetch_error(fixture("comfydeploy/get_run_success.json"), 200, max_body_bytes=200)
    assert "bytes" in error.message


def test_it_turns_transport_failures_into_provider_errors() -> None:
    c = ComfyDeployClient(f"{closed_port_url()}/api", {"token": TOKEN})
    with pytest.raises(ProviderError, match="could not connect"):
        c.call(c.fetch, RUN_ID)


def test_it_submits_to_the_deployment_queue() -> None:
    expected = fixture("comfydeploy/create_run_queue_request.json")

    def handler(request: Request) -> Response:
        assert request.method == "POST"
        assert str(request.url) == f"{BASE}/run/deployment/queue"
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert json.loads(request.content) == expected
        return Response(200, json=fixture("comfydeploy/create_run_queue_response.json"))

    c = client(handler, config={"deployment_id": expected["deployment_id"]})
    options = {"webhook": expected["webhook"], "webhook_intermediate_status": True}
    assert c.call(c.submit, {}, expected["inputs"], options) == RUN_ID


def test_it_prefers_the_deployment_id_from_options() -> None:
    def handler(request: Request) -> Response:
        assert json.loads(request.content) == {"deployment_id": "dep-2", "inputs": {}}
        return Response(200, json={"run_id": "r"})

    c = client(handler, config={"deployment_id": "dep-1"})
    assert c.call(c.submit, {}, {}, {"deployment_id": "dep-2"}) == "r"


def test_it_needs_a_deployment_id_to_submit() -> None:
    c = client(lambda request: Response(500))
    with pytest.raises(ProviderError, match="deployment_id") as caught:
        c.call(c.submit, {}, {}, {})
    assert caught.value.permanent


def test_it_reports_validation_errors_on_submit_as_permanent() -> None:
    c = client(lambda request: Response(422, json=fixture("comfydeploy/error_422_validation.json")))
    with pytest.raises(ProviderError) as caught:
        c.call(c.submit, {}, {}, {"deployment_id": "d"})
    assert caught.value.permanent
    assert "422" in caught.value.message


def test_it_needs_a_run_id_in_the_submit_answer() -> None:
    c = client(lambda request: Response(200, json={"ok": True}))
    with pytest.raises(ProviderError, match="run_id"):
        c.call(c.submit, {}, {}, {"deployment_id": "d"})


def cancel_handler(status: int, body: Any) -> Handler:
    def handler(request: Request) -> Response:
        assert request.method == "POST"
        assert str(request.url) == f"{BASE}/run/{RUN_ID}/cancel"
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        return Response(status, json=body)

    return handler


def test_it_cancels_a_run() -> None:
    c = client(cancel_handler(200, fixture("comfydeploy/cancel_run_response.json")))
    assert c.call(c.cancel, RUN_ID) is None


def test_it_reads_a_404_wrapped_as_500_on_cancel_as_permanent() -> None:
    body = {"detail": "Error cancel function 404: Run not found or has no modal function call ID"}
    c = client(cancel_handler(500, body))
    with pytest.raises(ProviderError) as caught:
        c.call(c.cancel, RUN_ID)
    assert caught.value.permanent
    assert caught.value.status_code == 404


def test_it_keeps_other_cancel_500s_transient() -> None:
    c = client(cancel_handler(500, {"detail": "Error cancel function modal timeout"}))
    with pytest.raises(ProviderError) as caught:
        c.call(c.cancel, RUN_ID)
    assert not caught.value.permanent


def test_it_checks_the_token_with_a_probe() -> None:
    def handler(request: Request) -> Response:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        return Response(404, json=fixture("comfydeploy/error_404_run_not_found.json"))

    c = client(handler)
    assert "accepted" in c.call(c.check)


def test_it_reports_a_bad_token_on_check() -> None:
    c = client(lambda request: Response(401, json={"detail": "Invalid token"}))
    with pytest.raises(ProviderError) as caught:
        c.call(c.check)
    assert caught.value.auth_failed


def test_it_needs_a_token() -> None:
    with pytest.raises(ProviderError, match="token"):
        ComfyDeployClient(BASE, {})


@pytest.mark.parametrize(
    ("name", "status", "n_outputs"),
    [
        ("webhook_run_updated_running.json", RunStatus.RUNNING, 0),
        ("webhook_run_updated_success.json", RunStatus.SUCCEEDED, 1),
        ("webhook_run_output.json", RunStatus.RUNNING, 1),
    ],
)
def test_it_parses_webhooks(name: str, status: RunStatus, n_outputs: int) -> None:
    body = fixture(f"comfydeploy/{name}")
    snapshot = parse_webhook(body)
    assert snapshot.external_id == RUN_ID
    assert snapshot.status == status
    assert snapshot.provider_status == body["status"]
    assert snapshot.progress == pytest.approx(body["progress"])
    assert snapshot.live_status == body["live_status"]
    assert len(snapshot.outputs) == n_outputs


@pytest.mark.parametrize("body", [{}, {"run_id": "x"}, [], {"run_id": "x", "status": None}])
def test_it_rejects_unreadable_webhooks(body: Any) -> None:
    with pytest.raises(ProviderError, match="webhook"):
        parse_webhook(body)


FETCHED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "is_public", "expected"),
    [
        # SigV4: signing time + lifetime, whatever the case of the names and the order of the parameters.
        (
            "https://s3/o.png?X-Amz-Date=20261130T110000Z&X-Amz-Expires=3600&X-Amz-Signature=ab",
            False,
            datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
        ),
        (
            "https://s3/o.png?x-amz-expires=60&x-amz-date=20261130T115930Z",
            None,
            datetime(2026, 11, 30, 12, 0, 30, tzinfo=UTC),
        ),
        # Not a valid signing time, or no lifetime: assume the documented hour from the fetch.
        ("https://s3/o.png?X-Amz-Date=20261330T110000Z&X-Amz-Expires=3600", False, FETCHED + timedelta(hours=1)),
        ("https://s3/o.png?X-Amz-Date=20261130T110000Z", None, FETCHED + timedelta(hours=1)),
        ("https://s3/o.png?X-Amz-Date=20261130T110000Z&X-Amz-Expires=soon", None, FETCHED + timedelta(hours=1)),
        # A public link does not expire; a look-alike value elsewhere in the URL is not a parameter.
        ("https://cdn/o.png", True, None),
        ("https://cdn/X-Amz-Date=20261130T110000Z/o.png?X-Amz-Expires=5", False, FETCHED + timedelta(hours=1)),
    ],
)
def test_it_reads_when_an_output_link_expires(url: str, is_public: bool | None, expected: datetime | None) -> None:
    assert url_expiry(url, is_public, FETCHED) == expected
