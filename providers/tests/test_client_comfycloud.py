"""Comfy Cloud client contract tests (v1 and v2): the production sender over loopback HTTP, shared fixtures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from yarl import URL

from providers.clients import jobs_list
from providers.clients.base import (
    ClientOptions,
    OutputKind,
    OutputRef,
    ProviderError,
    RunSnapshot,
    RunStatus,
    Unsupported,
)
from providers.clients.comfycloud import ComfyCloudClient
from providers.tests.loopback import Request, Response, provider_server, serve
from providers.tests.shared import error_of, fixture, snapshots

BASE = provider_server().url
KEY = "cc-test-key-abcdef123456"
V1_ID = "3f6c2a8e-1b4d-4e7f-9a0c-5d8e2b1f7a64"
V2_ID = "7f3d2c1b-9a8e-4d6f-b012-3c4d5e6f7a8b"
Handler = Callable[[Request], Response]


def client(handler: Handler, api: str = "v1", **config: Any) -> ComfyCloudClient:
    options = ClientOptions(max_body_bytes=config.pop("max_body_bytes", 8 * 1024 * 1024))
    serve(handler)
    return ComfyCloudClient(BASE, {"api_key": KEY}, {"api": api, **config}, options=options)


def assert_auth(request: Request, api: str) -> None:
    if api == "v1":
        assert request.headers["X-API-Key"] == KEY
        assert "Authorization" not in request.headers
    else:
        assert request.headers["Authorization"] == f"Bearer {KEY}"
        assert "X-API-Key" not in request.headers


def answer(method: str, url: str, body: Any, status: int = 200, api: str = "v1", **headers: str) -> Handler:
    def handler(request: Request) -> Response:
        assert request.method == method
        assert str(request.url) == url
        assert_auth(request, api)
        if isinstance(body, bytes):
            return Response(status, content=body, headers=headers)
        return Response(status, json=body, headers=headers)

    return handler


def fetch_v1(body: Any, status: int = 200, **headers: str) -> RunSnapshot:
    c = client(answer("GET", f"{BASE}/api/jobs/{V1_ID}", body, status, **headers))
    return c.call(c.fetch, V1_ID)


def fetch_v2(body: Any, status: int = 200, **headers: str) -> RunSnapshot:
    c = client(answer("GET", f"{BASE}/api/v2/jobs/{V2_ID}", body, status, api="v2", **headers), api="v2")
    return c.call(c.fetch, V2_ID)


def raises(call: Callable[[], Any]) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        call()
    assert caught.value.message
    assert KEY not in caught.value.message
    return caught.value


# -- v1 fetch ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("pending", RunStatus.QUEUED),
        ("in_progress", RunStatus.RUNNING),
        ("completed", RunStatus.SUCCEEDED),
        ("failed", RunStatus.FAILED),
    ],
)
def test_it_maps_every_v1_job_fixture(name: str, status: RunStatus) -> None:
    body = fixture(f"comfy-cloud/jobs_detail_{name}.json")
    snapshot = fetch_v1(body)
    assert snapshot.status == status
    assert snapshot.provider_status == name
    assert snapshot.external_id == V1_ID


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("queued", RunStatus.QUEUED),
        ("running", RunStatus.RUNNING),
        ("success", RunStatus.SUCCEEDED),
        ("error", RunStatus.FAILED),
        ("cancelled", RunStatus.CANCELLED),
    ],
)
def test_it_maps_the_raw_job_status_strings(name: str, status: RunStatus) -> None:
    raw = fixture(f"comfy-cloud/job_status_{name}.json")["status"]
    body = {**fixture("comfy-cloud/jobs_detail_pending.json"), "status": raw}
    snapshot = fetch_v1(body)
    assert snapshot.status == status
    assert snapshot.provider_status == raw


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("lost", RunStatus.LOST),
        ("non_retryable_error", RunStatus.FAILED),
        ("cancel_requested", RunStatus.RUNNING),
        ("submitted", RunStatus.QUEUED),
        ("teleporting", RunStatus.QUEUED),
    ],
)
def test_it_maps_lost_and_treats_unknown_v1_strings_as_in_flight(raw: str, status: RunStatus) -> None:
    body = {**fixture("comfy-cloud/jobs_detail_pending.json"), "status": raw}
    assert fetch_v1(body).status == status


def test_it_reads_v1_timestamps_in_seconds_and_ms() -> None:
    snapshot = fetch_v1(fixture("comfy-cloud/jobs_detail_completed.json"))
    assert snapshot.created == datetime.fromtimestamp(1763630102, tz=UTC)
    assert snapshot.queued == snapshot.created
    assert snapshot.started == datetime.fromtimestamp(1763630105.410, tz=UTC)
    assert snapshot.finished == datetime.fromtimestamp(1763630107.890, tz=UTC)
    assert snapshot.started.utcoffset() == timedelta(0)
    assert (snapshot.finished - snapshot.started).total_seconds() == pytest.approx(2.48)
    assert (snapshot.started - snapshot.queued).total_seconds() == pytest.approx(3.41)


def test_it_reads_v1_outputs_as_view_urls() -> None:
    (output,) = fetch_v1(fixture("comfy-cloud/jobs_detail_completed.json")).outputs
    assert output.filename == "probe_00001_.png"
    assert output.kind == OutputKind.IMAGE
    assert output.node_id == "2"
    assert output.url == f"{BASE}/api/view?filename=probe_00001_.png&subfolder=&type=output"
    assert output.url_expires is None


def test_it_reads_video_and_audio_outputs_and_skips_flags() -> None:
    body = fixture("comfy-cloud/jobs_detail_completed.json")
    body["outputs"] = {
        "7": {"video": [{"filename": "a.mp4", "subfolder": "vids", "type": "output"}], "animated": [True]},
        "8": {"audio": [{"filename": "b.flac", "subfolder": "", "type": "output"}], "text": ["hi"]},
    }
    outputs = fetch_v1(body).outputs
    assert [(o.filename, o.kind, o.node_id) for o in outputs] == [
        ("a.mp4", OutputKind.VIDEO, "7"),
        ("b.flac", OutputKind.AUDIO, "8"),
    ]
    assert "subfolder=vids" in outputs[0].url


def test_it_reads_the_v1_node_error() -> None:
    snapshot = fetch_v1(fixture("comfy-cloud/jobs_detail_failed.json"))
    error = error_of(snapshot)
    assert error.message == "Example failure message"
    assert (error.node_id, error.node_type, error.exception_type) == ("2", "SaveImage", "RuntimeError")
    assert error.traceback == '  File "execution.py", line 1, in execute\n'
    assert snapshot.finished == datetime.fromtimestamp(1763630106.690, tz=UTC)


def test_it_explains_a_v1_failure_without_details() -> None:
    body = {**fixture("comfy-cloud/jobs_detail_in_progress.json"), "status": "failed"}
    snapshot = fetch_v1(body)
    assert "failed" in error_of(snapshot).message
    assert snapshot.finished == datetime.fromtimestamp(1763630105, tz=UTC)  # update_time


def test_it_returns_unknown_for_404() -> None:
    snapshot = fetch_v1({"code": "NOT_FOUND", "message": "Job not found"}, 404)
    assert snapshot.status == RunStatus.UNKNOWN
    assert snapshot.provider_status == "not_found"


@pytest.mark.parametrize("status", [401, 403])
def test_it_flags_auth_failures_as_permanent(status: int) -> None:
    error = raises(lambda: fetch_v1(fixture("comfy-cloud/error_401.json"), status))
    assert error.permanent
    assert error.auth_failed
    assert "Invalid or missing API key" in error.message


def test_it_honours_retry_after_on_429() -> None:
    error = raises(lambda: fetch_v1({"code": "RATE", "message": "slow down"}, 429, **{"Retry-After": "12"}))
    assert not error.permanent
    assert error.retry_after == 12


@pytest.mark.parametrize("status", [500, 502, 503])
def test_it_treats_5xx_as_transient(status: int) -> None:
    assert not raises(lambda: fetch_v1({"code": "X", "message": "boom"}, status)).permanent


@pytest.mark.parametrize(
    "body",
    [
        b"<!doctype html><html><body>Cloudflare</body></html>",
        b"{'status': nope",
        json.dumps(fixture("comfy-cloud/jobs_detail_completed.json")).encode()[:250],
        b'{"status": "completed"}',
        b'{"id": "x"}',
        b"null",
    ],
    ids=["html", "malformed", "truncated", "missing-id", "missing-status", "null"],
)
@pytest.mark.parametrize("api", ["v1", "v2"])
def test_it_turns_bad_bodies_into_provider_errors(body: bytes, api: str) -> None:
    fetch = fetch_v1 if api == "v1" else fetch_v2
    assert not raises(lambda: fetch(body)).permanent


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_it_refuses_an_oversized_body(api: str) -> None:
    path = "api/jobs" if api == "v1" else "api/v2/jobs"
    body = fixture("comfy-cloud/jobs_detail_completed.json" if api == "v1" else "comfy-cloud/v2_job_succeeded.json")
    job_id = V1_ID if api == "v1" else V2_ID
    c = client(answer("GET", f"{BASE}/{path}/{job_id}", body, api=api), api=api, max_body_bytes=100)
    assert "bytes" in raises(lambda: c.call(c.fetch, job_id)).message


# -- v1 fetch_many -------------------------------------------------------------------------------


def test_it_fetches_many_with_one_list_call() -> None:
    requests: list[Request] = []
    listing = fixture("comfy-cloud/jobs_list.json")
    listing["jobs"] = [
        {**job, "status": "in_progress" if i == 0 else "pending"} for i, job in enumerate(listing["jobs"])
    ]
    ids = [job["id"] for job in listing["jobs"]]

    def handler(request: Request) -> Response:
        requests.append(request)
        assert_auth(request, "v1")
        assert request.url.path == "/api/jobs"
        assert request.url.query["status"] == "pending,in_progress"
        return Response(200, json=listing)

    c = client(handler)
    assert c.has_list_call
    results = snapshots(c.call(c.fetch_many, ids))
    assert len(requests) == 1
    assert [results[i].status for i in ids] == [RunStatus.RUNNING, RunStatus.QUEUED]


def test_it_fetches_ids_missing_from_both_lists_one_by_one() -> None:
    paths: list[str] = []
    gone = "00000000-0000-4000-8000-000000000000"

    def handler(request: Request) -> Response:
        paths.append(request.url.path)
        if request.url.path == "/api/jobs":
            return Response(200, json={"jobs": [], "pagination": {"offset": 0, "limit": 1000, "total": 0}})
        if request.url.path == f"/api/jobs/{V1_ID}":
            return Response(200, json=fixture("comfy-cloud/jobs_detail_completed.json"))
        return Response(404, json={"code": "NOT_FOUND", "message": "Job not found"})

    results = snapshots((c := client(handler)).call(c.fetch_many, [V1_ID, gone]))
    assert sorted(paths) == sorted(["/api/jobs", "/api/jobs", f"/api/jobs/{V1_ID}", f"/api/jobs/{gone}"])
    assert results[V1_ID].status == RunStatus.SUCCEEDED
    assert len(results[V1_ID].outputs) == 1
    assert results[gone].status == RunStatus.UNKNOWN


def listing_handler(finished: list[dict[str, Any]], paths: list[str], page_size: int = 1000) -> Handler:
    """/api/jobs answers in-flight with nothing and finished with `finished`, `page_size` per page;
    details come from the completed fixture (with the asked id)."""

    def handler(request: Request) -> Response:
        paths.append(str(request.url))
        if request.url.path != "/api/jobs":
            job_id = request.url.path.rsplit("/", 1)[-1]
            return Response(200, json={**fixture("comfy-cloud/jobs_detail_completed.json"), "id": job_id})
        if request.url.query["status"] == "pending,in_progress":
            return Response(200, json={"jobs": [], "pagination": {"has_more": False}})
        assert request.url.query["status"] == "completed,failed,cancelled"
        assert request.url.query["sort_order"] == "desc"
        offset = int(request.url.query["offset"])
        page = finished[offset : offset + page_size]
        return Response(200, json={"jobs": page, "pagination": {"has_more": offset + page_size < len(finished)}})

    return handler


def test_the_finished_list_answers_a_job_whose_outputs_it_shows_whole() -> None:
    listed = fixture("comfy-cloud/jobs_list.json")["jobs"][0]  # completed, outputs_count 1, preview_output
    paths: list[str] = []
    c = client(listing_handler([listed], paths))
    from_list = snapshots(c.call(c.fetch_many, [listed["id"]]))[listed["id"]]
    assert [p for p in paths if "/api/jobs/" in p] == []  # no detail call
    detail = client(answer("GET", f"{BASE}/api/jobs/{V1_ID}", fixture("comfy-cloud/jobs_detail_completed.json")))
    from_detail = detail.call(detail.fetch, V1_ID)
    # The list's one output is the detail's one output: same key (so no duplicate row), URL and kind.
    assert from_list.outputs == from_detail.outputs
    assert (from_list.status, from_list.started, from_list.finished) == (
        RunStatus.SUCCEEDED,
        datetime(2025, 11, 20, 9, 15, 5, 410000, tzinfo=UTC),
        datetime(2025, 11, 20, 9, 15, 7, 890000, tzinfo=UTC),
    )


def test_the_finished_list_carries_failures_and_empty_outputs() -> None:
    failed_id, empty_id = "10000000-0000-4000-8000-000000000001", "10000000-0000-4000-8000-000000000002"
    ended = {"create_time": 1763630102, "execution_start_time": 1763630103000, "execution_end_time": 1763630104000}
    error = {"node_id": "3", "node_type": "KSampler", "exception_message": "CUDA out of memory", "traceback": ["a"]}
    finished = [
        {**ended, "id": failed_id, "status": "failed", "execution_error": error, "outputs_count": 0},
        {**ended, "id": empty_id, "status": "completed", "outputs_count": 0},
    ]
    paths: list[str] = []
    c = client(listing_handler(finished, paths))
    results = snapshots(c.call(c.fetch_many, [failed_id, empty_id]))
    assert len(paths) == 2  # the two lists, no detail
    assert results[failed_id].status == RunStatus.FAILED
    failure = error_of(results[failed_id])
    assert (failure.message, failure.node_type) == ("CUDA out of memory", "KSampler")
    assert (results[empty_id].status, results[empty_id].outputs) == (RunStatus.SUCCEEDED, ())


@pytest.mark.parametrize(
    "change",
    [
        {"outputs_count": 2},  # the preview is only one of them
        {"outputs_count": None},  # count unknown
        {"preview_output": None},  # one output the list does not show
        {"preview_output": {"filename": "x.latent", "type": "output"}},  # no node: its key is unknown
        {"execution_end_time": None},  # when it ended is not in the entry
    ],
)
def test_a_list_entry_that_does_not_show_every_output_is_fetched(change: dict[str, Any]) -> None:
    listed = {k: v for k, v in {**fixture("comfy-cloud/jobs_list.json")["jobs"][0], **change}.items() if v is not None}
    paths: list[str] = []
    c = client(listing_handler([listed], paths))
    result = snapshots(c.call(c.fetch_many, [listed["id"]]))[listed["id"]]
    assert paths[-1] == f"{BASE}/api/jobs/{listed['id']}"
    assert len(result.outputs) == 1  # the detail's


def completed_jobs(count: int) -> list[dict[str, Any]]:
    """List entries of completed jobs without outputs, newest first."""
    return [
        {
            "id": f"20000000-0000-4000-8000-{i:012d}",
            "status": "completed",
            "create_time": 1,
            "execution_end_time": 2000,
            "outputs_count": 0,
        }
        for i in range(count)
    ]


def test_the_finished_list_is_read_page_by_page_until_every_id_is_found() -> None:
    finished = completed_jobs(2500)
    paths: list[str] = []
    c = client(listing_handler(finished, paths))
    wanted = [finished[5]["id"], finished[1500]["id"]]
    results = snapshots(c.call(c.fetch_many, wanted))
    offsets = [URL(p).query["offset"] for p in paths if "completed" in p]
    assert offsets == ["0", "1000"]  # found both on the second page: the third is never read
    assert all(results[i].status == RunStatus.SUCCEEDED for i in wanted)


def test_later_batches_of_a_sweep_reuse_the_finished_pages_already_read() -> None:
    finished = completed_jobs(1500)
    paths: list[str] = []
    c = client(listing_handler(finished, paths))
    c.call(c.fetch_many, [finished[1400]["id"]])  # the oldest: both pages read
    paths.clear()
    results = snapshots(c.call(c.fetch_many, [finished[3]["id"], finished[999]["id"]]))
    # Only the in-flight list is asked again; a finished job stays finished.
    assert [URL(p).query["status"] for p in paths] == ["pending,in_progress"]
    assert all(r.status == RunStatus.SUCCEEDED for r in results.values())


def counting_handler(finished: list[dict[str, Any]], offsets: list[int], peak: list[int], **faults: Any) -> Any:
    """Like listing_handler, but the finished pages state the list's total, take a moment (so overlapping
    requests overlap), and record in `peak` how many were in flight at once. `short_from` caps pages from
    that offset on at 300 entries; `fail_at` answers 500 for that offset."""
    active = 0

    async def handler(request: Request) -> Response:
        nonlocal active
        if request.url.path != "/api/jobs":
            job_id = request.url.path.rsplit("/", 1)[-1]
            return Response(200, json={**fixture("comfy-cloud/jobs_detail_completed.json"), "id": job_id})
        if request.url.query["status"] == "pending,in_progress":
            return Response(200, json={"jobs": [], "pagination": {"has_more": False}})
        offset = int(request.url.query["offset"])
        offsets.append(offset)
        active += 1
        peak[0] = max(peak[0], active)
        # Long enough for the requests sent together to reach the server together, on a loaded machine too.
        await asyncio.sleep(0.1)
        active -= 1
        if offset == faults.get("fail_at"):
            return Response(500, text="oops")
        size = 300 if offset >= faults.get("short_from", len(finished) + 1) else 1000
        more = offset + size < len(finished)
        pagination = {"offset": offset, "limit": 1000, "total": len(finished), "has_more": more}
        return Response(200, json={"jobs": finished[offset : offset + size], "pagination": pagination})

    return handler


def test_once_the_total_is_known_the_pages_still_needed_are_asked_for_together() -> None:
    finished = completed_jobs(4500)
    offsets: list[int] = []
    peak = [0]
    c = client(counting_handler(finished, offsets, peak))
    oldest = finished[-1]["id"]
    results = snapshots(c.call(c.fetch_many, [oldest]))
    # The first page alone (it tells the total), then the four still needed at once: 2 round trips, not 5.
    assert offsets[0] == 0 and sorted(offsets[1:]) == [1000, 2000, 3000, 4000]
    assert peak[0] == jobs_list.CONCURRENT_PAGES == 4
    assert results[oldest].status == RunStatus.SUCCEEDED


def read_finished(finished: list[dict[str, Any]], **faults: Any) -> tuple[jobs_list.FinishedJobs, Exception | None]:
    """The finished pages one client reads looking for the oldest job, and the error that stopped it, if any."""
    c = client(counting_handler(finished, [], [0], **faults))

    async def read() -> tuple[jobs_list.FinishedJobs, Exception | None]:
        pages = jobs_list.FinishedJobs(c)
        try:
            await pages.read_until({finished[-1]["id"]})
        except ProviderError as exc:
            return pages, exc
        return pages, None

    return c.call(read)


def test_pages_asked_for_together_stop_at_the_first_that_fails_and_keep_the_ones_before() -> None:
    finished = completed_jobs(4500)
    pages, error = read_finished(finished, fail_at=2000)
    assert isinstance(error, ProviderError)
    assert (pages.offset, pages.pages) == (2000, 2)
    # Pages 0 and 1,000 are kept; 3,000 was read but lies past the gap, so it is not.
    assert finished[1999]["id"] in pages.entries and finished[3000]["id"] not in pages.entries


def test_a_short_page_among_those_asked_together_leaves_no_gap() -> None:
    finished = completed_jobs(2600)
    pages, error = read_finished(finished, short_from=1000)
    assert error is None
    # From 1,000 on the server answered 300 a page: each next page starts where the last one ended.
    assert pages.ended and pages.offset == 2600
    assert set(pages.entries) == {job["id"] for job in finished}


def test_a_failed_finished_list_falls_back_to_one_call_per_job() -> None:
    paths: list[str] = []

    def handler(request: Request) -> Response:
        paths.append(request.url.path)
        if request.url.path == "/api/jobs" and "completed" in request.url.query["status"]:
            return Response(500, text="oops")
        if request.url.path == "/api/jobs":
            return Response(200, json={"jobs": []})
        return Response(200, json=fixture("comfy-cloud/jobs_detail_completed.json"))

    c = client(handler)
    assert snapshots(c.call(c.fetch_many, [V1_ID]))[V1_ID].status == RunStatus.SUCCEEDED
    assert paths == ["/api/jobs", "/api/jobs", f"/api/jobs/{V1_ID}"]


def test_it_reports_a_failed_list_call_for_every_id() -> None:
    c = client(lambda request: Response(401, json=fixture("comfy-cloud/error_401.json")))
    results = c.call(c.fetch_many, ["a", "b"])
    assert set(results) == {"a", "b"}
    assert all(isinstance(r, ProviderError) and r.auth_failed for r in results.values())


# -- v1 submit / cancel / download ---------------------------------------------------------------


def test_it_submits_a_v1_prompt() -> None:
    request_body = fixture("comfy-cloud/prompt_request.json")

    def handler(request: Request) -> Response:
        assert (request.method, str(request.url)) == ("POST", f"{BASE}/api/prompt")
        assert_auth(request, "v1")
        assert json.loads(request.content) == request_body
        return Response(200, json=fixture("comfy-cloud/prompt_response.json"))

    c = client(handler)
    options = {"api_key_comfy_org": request_body["extra_data"]["api_key_comfy_org"]}
    assert c.call(c.submit, request_body["prompt"], {}, options) == V1_ID


def test_it_applies_inputs_to_the_graph() -> None:
    def handler(request: Request) -> Response:
        assert json.loads(request.content)["prompt"]["2"]["inputs"]["filename_prefix"] == "custom"
        return Response(200, json=fixture("comfy-cloud/prompt_response.json"))

    c = client(handler)
    workflow = fixture("comfy-cloud/prompt_request.json")["prompt"]
    c.call(c.submit, workflow, {"2.filename_prefix": "custom"}, {})
    assert workflow["2"]["inputs"]["filename_prefix"] == "probe"  # the caller's graph is untouched
    error = raises(lambda: c.call(c.submit, workflow, {"seed": 1}, {}))
    assert error.permanent


def test_it_names_nodes_in_a_400_prompt_error() -> None:
    body = fixture("comfy-cloud/prompt_error_400.json")
    body["node_errors"] = {
        "3": {"errors": [{"message": "Required input is missing", "details": "model"}], "class_type": "KSampler"}
    }
    c = client(lambda request: Response(400, json=body))
    error = raises(lambda: c.call(c.submit, {"1": {"class_type": "X"}}, {}, {}))
    assert error.permanent
    assert "Prompt outputs failed validation" in error.message
    assert "node 3 (KSampler): Required input is missing: model" in error.message


def test_it_reports_insufficient_credits_as_permanent() -> None:
    c = client(lambda request: Response(402, json={"code": "PAYMENT", "message": "no credits"}))
    error = raises(lambda: c.call(c.submit, {"1": {"class_type": "X"}}, {}, {}))
    assert error.permanent
    assert "insufficient credits" in error.message


def test_it_cancels_a_pending_v1_job_through_the_queue() -> None:
    def handler(request: Request) -> Response:
        assert (request.method, str(request.url)) == ("POST", f"{BASE}/api/queue")
        assert_auth(request, "v1")
        assert json.loads(request.content) == fixture("comfy-cloud/queue_cancel_request.json")
        return Response(200, json=fixture("comfy-cloud/queue_cancel_response.json"))

    c = client(handler)
    assert c.call(c.cancel, V1_ID) is None


def running_v1(calls: list[str]) -> Handler:
    def handler(request: Request) -> Response:
        calls.append(f"{request.method} {request.url.path}")
        if request.url.path == "/api/queue":
            return Response(200, json={"deleted": [], "cleared": False})
        if request.url.path == "/api/interrupt":
            return Response(200)
        return Response(200, json=fixture("comfy-cloud/jobs_detail_in_progress.json"))

    return handler


def test_it_refuses_to_interrupt_all_running_v1_jobs() -> None:
    calls: list[str] = []
    c = client(running_v1(calls))
    with pytest.raises(Unsupported, match="all of this account's running jobs"):
        c.call(c.cancel, V1_ID)
    assert "POST /api/interrupt" not in calls


def test_it_interrupts_when_the_config_allows() -> None:
    calls: list[str] = []
    c = client(running_v1(calls), allow_global_interrupt=True)
    c.call(c.cancel, V1_ID)
    assert calls == ["POST /api/queue", f"GET /api/jobs/{V1_ID}", "POST /api/interrupt"]


def test_it_does_nothing_to_cancel_a_finished_v1_job() -> None:
    def handler(request: Request) -> Response:
        if request.url.path == "/api/queue":
            return Response(200, json={"deleted": [], "cleared": False})
        return Response(200, json=fixture("comfy-cloud/jobs_detail_completed.json"))

    c = client(handler)
    assert c.call(c.cancel, V1_ID) is None


def view_output(url: str) -> OutputRef:
    return OutputRef(key="k", filename="probe_00001_.png", kind=OutputKind.IMAGE, url=url)


def test_it_sends_the_key_only_to_its_own_host() -> None:
    c = client(lambda request: Response(500))
    own = c.download_request(view_output(f"{BASE}/api/view?filename=a.png&subfolder=&type=output"))
    assert own.headers["X-API-Key"] == KEY
    other = c.download_request(view_output("https://storage.googleapis.com/b/o?X-Goog-Signature=s"))
    assert "X-API-Key" not in other.headers


def test_it_resolves_a_view_url_to_the_signed_location() -> None:
    signed = "https://storage.googleapis.com/bucket/obj?X-Goog-Signature=abc"
    url = f"{BASE}/api/view?filename=probe_00001_.png&subfolder=&type=output"
    c = client(answer("GET", url, b"", 302, Location=signed))
    assert c.call(c.resolve_download, view_output(url)) == signed


def test_it_does_not_resolve_foreign_urls() -> None:
    c = client(lambda request: pytest.fail("no request may be sent"))
    signed = "https://storage.googleapis.com/bucket/obj?X-Goog-Signature=abc"
    assert c.call(c.resolve_download, view_output(signed)) == signed


def test_it_checks_the_v1_key() -> None:
    c = client(answer("GET", f"{BASE}/api/jobs?limit=1", fixture("comfy-cloud/jobs_list.json")))
    assert "accepted" in c.call(c.check)


# -- v2 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("queued", RunStatus.QUEUED),
        ("running", RunStatus.RUNNING),
        ("succeeded", RunStatus.SUCCEEDED),
        ("failed", RunStatus.FAILED),
        ("canceled", RunStatus.CANCELLED),
    ],
)
def test_it_maps_every_v2_job_fixture(name: str, status: RunStatus) -> None:
    snapshot = fetch_v2(fixture(f"comfy-cloud/v2_job_{name}.json"))
    assert snapshot.status == status
    assert snapshot.provider_status == name


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("expired", RunStatus.TIMED_OUT),
        ("canceling", RunStatus.RUNNING),
        ("cancelled", RunStatus.CANCELLED),
        ("hibernating", RunStatus.RUNNING),
    ],
)
def test_it_maps_the_other_v2_strings(raw: str, status: RunStatus) -> None:
    snapshot = fetch_v2({**fixture("comfy-cloud/v2_job_running.json"), "status": raw})
    assert snapshot.status == status
    assert snapshot.provider_status == raw


def test_it_explains_an_expired_v2_job() -> None:
    snapshot = fetch_v2({**fixture("comfy-cloud/v2_job_queued.json"), "status": "expired"})
    assert "expired" in error_of(snapshot).message


def test_it_reads_v2_queue_progress_and_timestamps() -> None:
    queued = fetch_v2(fixture("comfy-cloud/v2_job_queued.json"))
    assert queued.queue_position == 2
    assert queued.progress is None
    done = fetch_v2(fixture("comfy-cloud/v2_job_succeeded.json"))
    assert done.created == datetime(2026, 8, 20, 10, 0, tzinfo=UTC)
    assert done.queued and done.started and done.finished
    assert (done.started - done.queued).total_seconds() == 9
    assert (done.finished - done.started).total_seconds() == 2
    running = fetch_v2(fixture("comfy-cloud/v2_job_running.json"))
    assert running.progress == pytest.approx(0.42)
    assert running.live_status == "SaveImage"


def test_it_reads_v2_outputs_with_expiry() -> None:
    body = fixture("comfy-cloud/v2_job_succeeded.json")
    (output,) = fetch_v2(body).outputs
    assert output.filename == "probe_00001_.png"
    assert output.kind == OutputKind.IMAGE
    assert output.url == body["outputs"][0]["url"]
    assert output.url_expires == datetime(2026, 8, 20, 11, 0, 11, tzinfo=UTC)
    assert (output.node_id, output.size_bytes, output.content_type) == ("2", 1848, "image/png")
    assert output.key == "9f8a1c0d-2b3e-4f56-8a7b-1c2d3e4f5a6b"


def test_it_reads_the_v2_job_error() -> None:
    error = error_of(fetch_v2(fixture("comfy-cloud/v2_job_failed.json")))
    assert error.message == "Example failure message"
    assert (error.node_id, error.node_type, error.exception_type) == ("2", "SaveImage", "node_execution_error")


def test_it_returns_unknown_for_a_v2_404() -> None:
    body = {"error": {"code": "not_found", "message": "Job not found"}}
    assert fetch_v2(body, 404).status == RunStatus.UNKNOWN


def test_it_reads_the_v2_error_envelope_and_retry_after() -> None:
    error = raises(lambda: fetch_v2(fixture("comfy-cloud/v2_error_queue_full_429.json"), 429, **{"Retry-After": "30"}))
    assert error.retry_after == 30
    assert "Queue is full" in error.message
    assert not error.permanent


def test_it_submits_a_v2_job_with_an_idempotency_key() -> None:
    request_body = fixture("comfy-cloud/v2_submit_request.json")

    def handler(request: Request) -> Response:
        assert (request.method, str(request.url)) == ("POST", f"{BASE}/api/v2/jobs")
        assert_auth(request, "v2")
        assert request.headers["Idempotency-Key"] == "idem-1"
        assert json.loads(request.content) == request_body
        return Response(201, json=fixture("comfy-cloud/v2_job_queued.json"))

    c = client(handler, api="v2")
    assert c.call(c.submit, request_body["workflow"], {}, {"idempotency_key": "idem-1"}) == V2_ID


def test_it_names_nodes_in_a_v2_invalid_workflow() -> None:
    c = client(lambda request: Response(422, json=fixture("comfy-cloud/v2_error_invalid_workflow_422.json")), "v2")
    error = raises(lambda: c.call(c.submit, {"1": {"class_type": "X"}}, {}, {}))
    assert error.permanent
    assert "required input 'model' is not connected" in error.message
    assert "node 12: missing_input: model" in error.message


def test_it_cancels_a_v2_job() -> None:
    url = f"{BASE}/api/v2/jobs/{V2_ID}/cancel"
    c = client(answer("POST", url, fixture("comfy-cloud/v2_job_canceled.json"), api="v2"), api="v2")
    assert c.call(c.cancel, V2_ID) is None


def test_it_fetches_many_v2_jobs_one_by_one() -> None:
    seen: list[str] = []

    def handler(request: Request) -> Response:
        seen.append(request.url.path)
        job_id = request.url.path.rsplit("/", 1)[-1]
        return Response(200, json={**fixture("comfy-cloud/v2_job_running.json"), "id": job_id})

    c = client(handler, api="v2")
    assert not c.has_list_call
    results = snapshots(c.call(c.fetch_many, ["a", "b"]))
    assert sorted(seen) == ["/api/v2/jobs/a", "/api/v2/jobs/b"]
    assert {k: v.status for k, v in results.items()} == {"a": RunStatus.RUNNING, "b": RunStatus.RUNNING}


def test_it_refuses_an_unknown_api_version() -> None:
    with pytest.raises(ProviderError, match="v1"):
        ComfyCloudClient(BASE, {"api_key": KEY}, {"api": "v3"})


def test_a_failing_later_in_flight_page_keeps_what_the_first_page_showed() -> None:
    running = {"id": V1_ID, "status": "in_progress", "create_time": 1}
    paths: list[str] = []

    def handler(request: Request) -> Response:
        paths.append(str(request.url))
        if request.url.query.get("status") == "pending,in_progress":
            if request.url.query["offset"] == "0":
                return Response(200, json={"jobs": [running], "pagination": {"has_more": True}})
            return Response(502, text="bad gateway")
        if request.url.path == "/api/jobs":
            return Response(200, json={"jobs": [], "pagination": {"has_more": False}})
        return Response(200, json=fixture("comfy-cloud/jobs_detail_completed.json"))

    c = client(handler)
    other = "40000000-0000-4000-8000-000000000000"
    results = snapshots(c.call(c.fetch_many, [V1_ID, other]))
    assert results[V1_ID].status == RunStatus.RUNNING  # from the first page, despite the second's 502
    assert isinstance(results[other], RunSnapshot)  # looked up on its own


def test_a_rate_limited_finished_list_holds_back_the_one_by_one_calls() -> None:
    paths: list[str] = []

    def handler(request: Request) -> Response:
        paths.append(request.url.path)
        if request.url.query.get("status") == "completed,failed,cancelled":
            return Response(429, json={"code": "RATE_LIMITED", "message": "slow down"}, headers={"Retry-After": "30"})
        if request.url.path == "/api/jobs":
            return Response(200, json={"jobs": []})
        raise AssertionError(f"no per-job call while rate limited: {request.url}")

    c = client(handler)
    results = c.call(c.fetch_many, [V1_ID, "50000000-0000-4000-8000-000000000000"])
    assert all(isinstance(r, ProviderError) and r.retry_after == 30 for r in results.values())
    assert paths == ["/api/jobs", "/api/jobs"]


def test_pages_shorter_than_asked_for_move_the_offset_by_what_came() -> None:
    finished = completed_jobs(1200)
    paths: list[str] = []
    c = client(listing_handler(finished, paths, page_size=400))  # a server capping pages at 400
    results = snapshots(c.call(c.fetch_many, [finished[1100]["id"]]))
    offsets = [URL(p).query["offset"] for p in paths if "completed" in p]
    assert offsets == ["0", "400", "800"]  # nothing skipped
    assert [p for p in paths if "/api/jobs/" in p] == []
    assert results[finished[1100]["id"]].status == RunStatus.SUCCEEDED


def test_only_final_entries_are_kept_for_later_batches() -> None:
    # A server ignoring the status filter: an in-progress entry in the finished pages is not kept.
    running = {"id": V1_ID, "status": "in_progress", "create_time": 1}
    paths: list[str] = []
    c = client(listing_handler([running, *completed_jobs(5)], paths))
    c.call(c.fetch_many, [V1_ID])
    paths.clear()
    assert snapshots(c.call(c.fetch_many, [V1_ID]))[V1_ID].status == RunStatus.SUCCEEDED  # asked again: the detail
    assert paths[-1] == f"{BASE}/api/jobs/{V1_ID}"


# -- the graph a job executed ----------------------------------------------------------------------


def test_it_reports_the_graph_of_a_v1_job_detail() -> None:
    detail = fixture("comfy-cloud/jobs_detail_completed.json")
    assert fetch_v1(detail).workflow == detail["workflow"]["prompt"]
    assert fetch_v1({**detail, "workflow": {"nodes": [], "links": []}}).workflow is None  # no API-format prompt


def test_it_fetches_the_graph_of_a_job_apart() -> None:
    detail = fixture("comfy-cloud/jobs_detail_completed.json")
    c = client(answer("GET", f"{BASE}/api/jobs/{V1_ID}", detail))
    assert c.call(c.fetch_workflow, V1_ID) == detail["workflow"]["prompt"]
    graph = detail["workflow"]["prompt"]
    url = f"{BASE}/api/v2/jobs/{V2_ID}/workflow"
    c = client(answer("GET", url, {"workflow": graph, "format": "api"}, api="v2"), api="v2")
    assert c.call(c.fetch_workflow, V2_ID) == graph
    # `save` is the editor's document, not the graph that ran: no graph rather than the wrong one.
    c = client(answer("GET", url, {"workflow": {"nodes": [], "links": []}, "format": "save"}, api="v2"), api="v2")
    assert c.call(c.fetch_workflow, V2_ID) is None
    c = client(answer("GET", url, {"error": {"code": "not_found", "message": "gone"}}, 404, api="v2"), api="v2")
    assert c.call(c.fetch_workflow, V2_ID) is None
