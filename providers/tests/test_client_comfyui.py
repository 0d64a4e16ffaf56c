"""Contract tests for the self-hosted ComfyUI client against recorded 0.3.64 answers and the shared fixtures,
through the production sender over loopback HTTP."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from providers.clients.base import ClientOptions, OutputKind, ProviderError, RunStatus, SubmissionRejected
from providers.clients.comfyui import ComfyUIClient
from providers.tests.loopback import BAD_RESPONSES, Request, Response, Router, body_of, provider_server
from providers.tests.shared import error_of, fixture, recorded, snapshots

BASE = provider_server().url
PROXY = {"header": "X-Proxy-Token", "value": "proxy-secret-1234"}
OK_ID = "48f59c4f-1a2b-4a22-ba5b-dcdcae940ae8"
FIX_ID = "d2a7c1e4-5b3f-4c8a-9e1d-7f6b0a2c3e48"
QUEUED_ID = "c0e3e1d2-66ca-46e2-81ae-209205e100d5"
RUNNING_ID = "c59c9472-3d3c-42a6-a21a-0791e20c7b71"
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def client(router: Router, **options: Any) -> ComfyUIClient:
    router.serve()
    return ComfyUIClient(BASE, PROXY, options=ClientOptions(**options))


def router(routes: dict) -> Router:
    return Router(routes, headers={"X-Proxy-Token": "proxy-secret-1234"})


def ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


# -- submit --------------------------------------------------------------------------------------


def test_it_submits_with_a_client_chosen_prompt_id():
    seen = {}

    def answer(request: Request) -> Response:
        seen.update(body_of(request))
        return Response(200, json={"prompt_id": seen["prompt_id"], "number": 3, "node_errors": {}})

    c = client(router({("POST", "/prompt"): answer}))
    external_id = c.call(c.submit, recorded("workflow_minimal.json"), {"2.filename_prefix": "x"}, {})
    assert UUID4.match(external_id) and seen["prompt_id"] == external_id
    assert seen["prompt"]["2"]["inputs"]["filename_prefix"] == "x"
    assert seen["prompt"]["1"] == recorded("workflow_minimal.json")["1"]
    assert seen["client_id"]


def test_it_uses_the_servers_id_when_an_old_comfyui_ignores_ours():
    r = router({("POST", "/prompt"): (200, recorded("post_prompt.json"))})
    c = client(r)
    assert c.call(c.submit, recorded("workflow_minimal.json"), {}, {}) == OK_ID


@pytest.mark.parametrize(
    ("name", "expected", "field"),
    [
        (
            "post_prompt_validation_error.json",
            [
                "Prompt outputs failed validation",
                "Node 1 (LoadImage)",
                "Custom validation failed",
                "does_not_exist.png",
            ],
            "1.image",
        ),
        ("post_prompt_unknown_node.json", ["NoSuchNode does not exist", "#1"], "1"),
        ("post_prompt_no_output.json", ["Prompt has no outputs"], "workflow"),
    ],
)
def test_it_reports_validation_errors_on_submit(name, expected, field):
    r = router({("POST", "/prompt"): (400, recorded(name))})
    c = client(r)
    with pytest.raises(SubmissionRejected) as caught:
        c.call(c.submit, recorded("workflow_invalid_validation.json"), {}, {})
    assert caught.value.permanent and not caught.value.auth_failed
    for text in expected:
        assert text in caught.value.message
    # Each problem names the node (and input) at fault, for the API's 422 and the form.
    assert caught.value.problems[0].field == field and caught.value.problems[0].message
    if field == "1.image":
        assert "does_not_exist.png" in caught.value.problems[0].message


def test_it_rejects_ui_format_workflows_and_unknown_input_nodes():
    c = client(router({}))
    with pytest.raises(ProviderError, match="API format"):
        c.call(c.submit, {"nodes": [], "links": []}, {}, {})
    with pytest.raises(SubmissionRejected, match="not in the workflow") as caught:
        c.call(c.submit, recorded("workflow_minimal.json"), {"99.seed": 1}, {})
    assert [p.field for p in caught.value.problems] == ["99.seed"]


def test_it_validates_the_proxy_secret():
    with pytest.raises(ProviderError, match="credential"):
        ComfyUIClient(BASE, {"header": "X-Token"})
    assert ComfyUIClient(BASE, {}).auth_headers() == {}


# -- fetch: history --------------------------------------------------------------------------------


def test_it_maps_a_recorded_success():
    r = router({("GET", f"/history/{OK_ID}"): (200, recorded("history_success.json"))})
    c = client(r)
    snap = c.call(c.fetch, OK_ID)
    assert (snap.status, snap.provider_status, snap.progress) == (RunStatus.SUCCEEDED, "success", 1.0)
    assert snap.started == ms(1796059904983) and snap.finished == ms(1796059904987)
    assert snap.started.tzinfo is UTC and snap.created is None  # 0.3.64 has no create_time
    [out] = snap.outputs
    assert (out.filename, out.kind, out.node_id, out.content_type) == (
        "peer_min_00001_.png",
        OutputKind.IMAGE,
        "2",
        "image/png",
    )
    assert out.url == f"{BASE}/view?filename=peer_min_00001_.png&subfolder=&type=output"
    assert len(r.requests) == 1


def test_it_reads_create_time_for_queue_and_run_durations():
    r = router({("GET", f"/history/{FIX_ID}"): (200, fixture("comfyui-oss/history_success.json"))})
    c = client(r)
    snap = c.call(c.fetch, FIX_ID)
    assert snap.created == snap.queued == ms(1763630102123)
    assert snap.started is not None and snap.queued is not None and snap.finished is not None
    assert snap.started - snap.queued == timedelta(milliseconds=27)
    assert snap.finished - snap.started == timedelta(milliseconds=161)


def test_it_maps_a_recorded_node_error():
    r = router({("GET", "/history/x"): (200, {"x": next(iter(recorded("history_error.json").values()))})})
    c = client(r)
    snap = c.call(c.fetch, "x")
    assert (snap.status, snap.provider_status) == (RunStatus.FAILED, "error")
    error = error_of(snap)
    assert error.node_id == "2" and error.node_type == "SaveImage"
    assert error.exception_type == "Exception"
    assert error.message.startswith("**** ERROR: Saving image outside the output folder")
    assert error.traceback is not None
    assert error.traceback.count('File "') == 6 and snap.finished == ms(1796059910663)
    assert snap.outputs == ()


@pytest.mark.parametrize("source", ["recorded", "fixture"])
def test_it_maps_an_interrupt_to_cancelled(source):
    body = (
        recorded("history_interrupted.json")
        if source == "recorded"
        else fixture("comfyui-oss/history_interrupted.json")
    )
    external_id = next(iter(body))
    c = client(router({("GET", f"/history/{external_id}"): (200, body)}))
    snap = c.call(c.fetch, external_id)
    assert (snap.status, snap.provider_status, snap.error) == (RunStatus.CANCELLED, "error", None)
    assert snap.live_status is not None
    assert "Interrupted at node" in snap.live_status and snap.finished is not None


def test_it_collects_every_file_output_and_skips_the_rest():
    entry = next(iter(fixture("comfyui-oss/history_success.json").values()))
    entry["outputs"] = {
        "2": {
            "images": [
                {
                    "filename": "a.png",
                    "subfolder": "s 1",
                    "type": "output",
                    "width": 64,
                    "height": 32,
                    "extra": "media metadata",
                }
            ]
        },
        "3": {"images": [{"filename": "a.png", "subfolder": "", "type": "temp"}], "animated": [False]},
        "4": {"gifs": [{"filename": "clip.webp", "subfolder": "", "type": "output", "format": "image/webp"}]},
        "5": {"video": [{"filename": "v.mp4", "subfolder": "", "type": "output"}]},
        "6": {"audio": [{"filename": "s.flac", "subfolder": "", "type": "output"}]},
        "7": {"3d": [{"filename": "m.glb", "subfolder": "", "type": "output"}], "text": ["a caption", "more"]},
        "8": {"files": [{"filename": "notes.txt", "subfolder": "", "type": "output"}], "weird": "not a list"},
    }
    c = client(router({("GET", "/history/x"): (200, {"x": entry})}))
    outputs = {o.key: o for o in c.call(c.fetch, "x").outputs}
    assert set(outputs) == {
        "2/output/s 1/a.png",
        "3/temp/a.png",
        "4/output/clip.webp",
        "5/output/v.mp4",
        "6/output/s.flac",
        "7/output/m.glb",
        "8/output/notes.txt",
    }
    assert outputs["2/output/s 1/a.png"].url == f"{BASE}/view?filename=a.png&subfolder=s+1&type=output"
    assert (outputs["2/output/s 1/a.png"].width, outputs["2/output/s 1/a.png"].height) == (64, 32)
    assert outputs["3/temp/a.png"].url.endswith("type=temp")
    kinds = {key.split("/")[0]: o.kind for key, o in outputs.items()}
    assert kinds == {
        "2": OutputKind.IMAGE,
        "3": OutputKind.IMAGE,
        "4": OutputKind.VIDEO,
        "5": OutputKind.VIDEO,
        "6": OutputKind.AUDIO,
        "7": OutputKind.MESH,
        "8": OutputKind.TEXT,
    }


def test_it_treats_an_unknown_status_str_as_in_flight():
    entry = next(iter(fixture("comfyui-oss/history_success.json").values()))
    entry["status"]["status_str"] = "paused-by-plugin"
    c = client(router({("GET", "/history/x"): (200, {"x": entry})}))
    snap = c.call(c.fetch, "x")
    assert (snap.status, snap.provider_status) == (RunStatus.RUNNING, "paused-by-plugin")


# -- fetch: queue and unknown ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("external_id", "status", "raw", "position"),
    [
        (QUEUED_ID, RunStatus.QUEUED, "queue_pending", 0),
        (RUNNING_ID, RunStatus.RUNNING, "queue_running", None),
    ],
)
def test_it_finds_queued_and_running_prompts_in_the_queue(external_id, status, raw, position):
    r = router({("GET", f"/history/{external_id}"): (200, {}), ("GET", "/queue"): (200, recorded("queue.json"))})
    c = client(r)
    snap = c.call(c.fetch, external_id)
    assert (snap.status, snap.provider_status, snap.queue_position) == (status, raw, position)


def test_it_orders_the_pending_heap_by_number():
    queue = {
        "queue_running": [],
        "queue_pending": [
            [9, "b", {}, {}, []],
            [4, "a", {}, {"create_time": 1763630102123}, []],
            [12, "c", {}, {}, []],
        ],
    }
    c = client(
        router({("GET", "/history/c"): (200, {}), ("GET", "/queue"): (200, queue), ("GET", "/history/a"): (200, {})})
    )
    assert c.call(c.fetch, "c").queue_position == 2
    snap = c.call(c.fetch, "a")
    assert snap.queue_position == 0 and snap.created == ms(1763630102123)


def test_it_reports_an_id_in_neither_queue_nor_history_as_unknown():
    r = router(
        {
            ("GET", "/history/gone"): (200, fixture("comfyui-oss/history_unknown_or_not_finished.json")),
            ("GET", "/queue"): (200, recorded("queue_idle.json")),
        }
    )
    c = client(r)
    snap = c.call(c.fetch, "gone")
    assert (snap.status, snap.provider_status) == (RunStatus.UNKNOWN, "not_found")
    # history, queue, then history again: a run finishing between the first two calls is not mistaken for lost
    assert [req.url.path for req in r.requests] == ["/history/gone", "/queue", "/history/gone"]


def test_it_sees_a_run_that_finished_between_history_and_queue():
    r = router(
        {
            ("GET", f"/history/{OK_ID}"): [(200, {}), (200, recorded("history_success.json"))],
            ("GET", "/queue"): (200, recorded("queue_idle.json")),
        }
    )
    c = client(r)
    assert c.call(c.fetch, OK_ID).status is RunStatus.SUCCEEDED


# -- fetch_many ----------------------------------------------------------------------------------


def test_an_older_build_without_the_jobs_list_is_read_through_one_history_list_call():
    done = {f"done-{i}": next(iter(recorded("history_success.json").values())) for i in range(6)}
    r = router(
        {
            ("GET", "/queue"): (200, recorded("queue.json")),
            ("GET", "/api/jobs"): Response(404, text="404: Not Found"),  # aiohttp's unknown route
            ("GET", "/history"): (200, done),
            ("GET", "/history/old"): (200, {}),
        }
    )
    c = client(r)
    ids = [QUEUED_ID, RUNNING_ID, *done, "old"]
    result = snapshots(c.call(c.fetch_many, ids))
    assert list(result) == ids
    assert result[QUEUED_ID].status is RunStatus.QUEUED and result[RUNNING_ID].status is RunStatus.RUNNING
    assert all(result[i].status is RunStatus.SUCCEEDED for i in done)
    assert result["old"].status is RunStatus.UNKNOWN
    assert [req.url.path for req in r.requests] == ["/queue", "/api/jobs", "/history", "/history/old"]
    assert r.requests[2].url.query["max_items"] == str(7 + 16)
    assert ComfyUIClient.has_list_call
    c.call(c.fetch_many, list(done))  # the same client (sweep) does not ask for /api/jobs again
    assert [req.url.path for req in r.requests[4:]] == ["/queue", "/history"]


def job_entry(prompt_id: str, **fields: object) -> dict:
    """An /api/jobs entry as comfy_execution/jobs.py normalize_history_item writes it for recorded history."""
    return {
        "id": prompt_id,
        "status": "completed",
        "priority": 3,
        "create_time": 1763630102123,
        "execution_start_time": 1763630102200,
        "execution_end_time": 1763630104900,
        "outputs_count": 1,
        "previewable_outputs_count": 1,
        "preview_output": {
            "filename": "probe_00001_.png",
            "subfolder": "",
            "type": "output",
            "nodeId": "2",
            "mediaType": "images",
        },
        **fields,
    }


@pytest.mark.parametrize(
    ("answer", "held"),
    [
        (Response(429, headers={"Retry-After": "30"}, text="slow down"), True),
        (Response(403, text="forbidden"), True),  # a reverse proxy refusing the credential
        (Response(500, text="oops"), False),  # no advice: the history calls still answer
    ],
)
def test_a_jobs_list_that_says_slow_down_holds_back_the_history_calls(answer, held):
    history = recorded("history_success.json")
    entry = next(iter(history.values()))
    ids = [f"done-{i}" for i in range(6)]
    r = router(
        {
            ("GET", "/queue"): (200, recorded("queue_idle.json")),
            ("GET", "/api/jobs"): answer,
            ("GET", "/history"): (200, dict.fromkeys(ids, entry)),
        }
    )
    c = client(r)
    result = c.call(c.fetch_many, ids)
    if held:
        assert [req.url.path for req in r.requests] == ["/queue", "/api/jobs"]
        assert all(isinstance(result[i], ProviderError) for i in ids)
        first = result[ids[0]]
        assert isinstance(first, ProviderError) and first.retry_after == (30 if answer.status_code == 429 else None)
    else:
        assert [req.url.path for req in r.requests] == ["/queue", "/api/jobs", "/history"]
        answered = snapshots(result)
        assert all(answered[i].status is RunStatus.SUCCEEDED for i in ids)


def test_the_jobs_list_answers_finished_runs_as_their_history_does():
    history = recorded("history_success.json")
    [(prompt_id, entry)] = history.items()
    [(node_id, node)] = entry["outputs"].items()
    preview = {**node["images"][0], "nodeId": node_id, "mediaType": "images"}
    others = [f"other-{i}" for i in range(5)]
    jobs = [job_entry(prompt_id, preview_output=preview), *(job_entry(i, outputs_count=0) for i in others)]
    r = router(
        {
            ("GET", "/queue"): (200, recorded("queue_idle.json")),
            ("GET", "/api/jobs"): (200, {"jobs": jobs, "pagination": {"has_more": False}}),
            ("GET", f"/history/{prompt_id}"): (200, history),
        }
    )
    c = client(r)
    listed = snapshots(c.call(c.fetch_many, [prompt_id, *others]))
    assert [req.url.path for req in r.requests] == ["/queue", "/api/jobs"]
    assert r.requests[1].url.query["status"] == "completed,failed,cancelled"
    from_history = c.call(c.fetch, prompt_id)
    assert listed[prompt_id].outputs == from_history.outputs and len(from_history.outputs) == 1
    assert (listed[prompt_id].status, listed[prompt_id].provider_status) == (RunStatus.SUCCEEDED, "success")
    assert all(listed[i].status is RunStatus.SUCCEEDED and listed[i].outputs == () for i in others)


def test_the_jobs_list_carries_failures_and_defers_interrupts_and_many_outputs_to_history():
    history_error = recorded("history_error.json")
    [(failed_id, failed_history)] = history_error.items()
    error_data = next(data for event, data in failed_history["status"]["messages"] if event == "execution_error")
    jobs = [
        job_entry(failed_id, status="failed", outputs_count=0, preview_output=None, execution_error=error_data),
        job_entry("stopped", status="cancelled", outputs_count=0),
        job_entry("many", outputs_count=2),  # two outputs: only the history shows both
        *(job_entry(f"x-{i}", outputs_count=0) for i in range(3)),
    ]
    r = router(
        {
            ("GET", "/queue"): (200, recorded("queue_idle.json")),
            ("GET", "/api/jobs"): (200, {"jobs": [{k: v for k, v in j.items() if v is not None} for j in jobs]}),
            ("GET", "/history/many"): (200, {"many": next(iter(recorded("history_success.json").values()))}),
            ("GET", "/history/stopped"): (200, {"stopped": next(iter(recorded("history_interrupted.json").values()))}),
            ("GET", f"/history/{failed_id}"): (200, history_error),
        }
    )
    c = client(r)
    result = snapshots(c.call(c.fetch_many, [failed_id, "stopped", "many", "x-0", "x-1", "x-2"]))
    # The interrupt is read from its history, which names the node it stopped at.
    assert sorted(req.url.path for req in r.requests) == ["/api/jobs", "/history/many", "/history/stopped", "/queue"]
    assert result[failed_id].error == c.call(c.fetch, failed_id).error  # the same error as its history gives
    assert result[failed_id].status is RunStatus.FAILED
    assert result["stopped"].status is RunStatus.CANCELLED
    assert result["stopped"].live_status == c.call(c.fetch, "stopped").live_status
    assert result["many"].status is RunStatus.SUCCEEDED


def test_it_fetches_a_few_finished_runs_one_by_one():
    r = router(
        {
            ("GET", "/queue"): (200, recorded("queue_idle.json")),
            ("GET", f"/history/{OK_ID}"): (200, recorded("history_success.json")),
        }
    )
    c = client(r)
    result = snapshots(c.call(c.fetch_many, [OK_ID]))
    assert result[OK_ID].status is RunStatus.SUCCEEDED and len(r.requests) == 2


def test_it_gives_every_id_the_error_when_the_queue_call_fails():
    c = client(router({("GET", "/queue"): (502, {"detail": "bad gateway"})}))
    result = c.call(c.fetch_many, ["a", "b"])
    assert all(isinstance(v, ProviderError) and not v.permanent for v in result.values())


# -- cancel and check ----------------------------------------------------------------------------


def test_it_cancels_a_pending_prompt_by_deleting_it():
    r = router(
        {
            ("GET", "/queue"): [
                (200, fixture("comfyui-oss/queue_pending.json")),
                (200, fixture("comfyui-oss/queue_empty.json")),
            ],
            ("POST", "/queue"): Response(200),
        }
    )
    c = client(r)
    c.call(c.cancel, FIX_ID)
    assert body_of(r.calls("POST", "/queue")[0]) == fixture("comfyui-oss/queue_delete_request.json")
    assert not r.calls("POST", "/interrupt")


def test_it_interrupts_a_running_prompt_by_id():
    r = router(
        {
            ("GET", "/queue"): (200, fixture("comfyui-oss/queue_running.json")),
            ("POST", "/interrupt"): Response(200),
        }
    )
    c = client(r)
    c.call(c.cancel, FIX_ID)
    assert body_of(r.calls("POST", "/interrupt")[0]) == fixture("comfyui-oss/interrupt_request.json")


def test_it_checks_with_system_stats():
    c = client(router({("GET", "/system_stats"): (200, recorded("system_stats.json"))}))
    assert "0.3.64" in c.call(c.check)


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_it_flags_refused_credentials(status):
    c = client(router({("GET", "/history/x"): (status, {"detail": "nope"})}))
    with pytest.raises(ProviderError) as caught:
        c.call(c.fetch, "x")
    assert caught.value.permanent and caught.value.auth_failed
    assert "proxy-secret" not in caught.value.message


def test_it_honours_retry_after_on_429():
    c = client(router({("GET", "/history/x"): Response(429, headers={"Retry-After": "7"})}))
    with pytest.raises(ProviderError) as caught:
        c.call(c.fetch, "x")
    assert caught.value.retry_after == 7 and not caught.value.permanent


@pytest.mark.parametrize(("name", "response"), BAD_RESPONSES, ids=[n for n, _ in BAD_RESPONSES])
def test_it_turns_bad_answers_into_provider_errors(name, response):
    c = client(router({("GET", "/history/x"): response}))
    with pytest.raises(ProviderError) as caught:
        c.call(c.fetch, "x")
    assert caught.value.message


def test_it_refuses_an_oversized_body():
    big = {OK_ID: {**next(iter(recorded("history_success.json").values())), "pad": "x" * 5000}}
    c = client(router({("GET", f"/history/{OK_ID}"): (200, big)}), max_body_bytes=1000)
    with pytest.raises(ProviderError, match="bytes"):
        c.call(c.fetch, OK_ID)


@pytest.mark.parametrize(
    "body",
    [
        [1, 2],
        {"x": "not an entry"},
        {"x": {"status": "success"}},
        {"x": {"outputs": [], "status": {}}},
    ],
)
def test_it_turns_missing_or_mistyped_fields_into_provider_errors(body):
    c = client(router({("GET", "/history/x"): (200, body)}))
    with pytest.raises(ProviderError, match="ComfyUI"):
        c.call(c.fetch, "x")


def test_it_turns_a_mistyped_queue_into_a_provider_error():
    c = client(router({("GET", "/history/x"): (200, {}), ("GET", "/queue"): (200, {"queue_running": 5})}))
    with pytest.raises(ProviderError, match="queue_running"):
        c.call(c.fetch, "x")


# -- the graph a run executed ----------------------------------------------------------------------


def test_it_reports_the_graph_of_history_entries_and_queue_items():
    c = client(router({("GET", f"/history/{OK_ID}"): (200, recorded("history_success.json"))}))
    assert c.call(c.fetch, OK_ID).workflow == recorded("workflow_minimal.json")
    r = router({("GET", f"/history/{RUNNING_ID}"): (200, {}), ("GET", "/queue"): (200, recorded("queue.json"))})
    queued = next(item for item in recorded("queue.json")["queue_running"] if item[1] == RUNNING_ID)
    c = client(r)
    assert c.call(c.fetch, RUNNING_ID).workflow == queued[2]


def test_it_fetches_the_graph_of_a_finished_run_from_its_history_entry():
    r = router(
        {("GET", f"/history/{OK_ID}"): (200, recorded("history_success.json")), ("GET", "/history/gone"): (200, {})}
    )
    c = client(r)
    assert c.call(c.fetch_workflow, OK_ID) == recorded("workflow_minimal.json")
    assert c.call(c.fetch_workflow, "gone") is None
