"""Fake Comfy Cloud API (docs/providers.md), mounted at /comfycloud: v1 (`X-API-Key`) and v2 (`Bearer`).

Shapes follow providers/tests/provider_data/fixtures/comfy-cloud. Runs are shared by both APIs. v1 output items
carry the job id as `subfolder` (Cloud ignores subfolders), which is how `/api/view` finds the run.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from providers.fake import files, state
from providers.fake.comfydeploy import as_of
from providers.fake.comfyui import outputs_summary
from providers.fake.png import png_bytes
from providers.fake.state import FakeRun, FakeState, is_stale, script_for_workflow

KIND = "comfycloud"
STATE = web.AppKey("comfycloud_state", FakeState)
IDEMPOTENCY = web.AppKey("comfycloud_idempotency", dict)
V1_STATUS = {
    state.QUEUED: "pending",
    state.RUNNING: "in_progress",
    state.SUCCEEDED: "completed",
    state.FAILED: "failed",
    state.CANCELLED: "cancelled",
    state.TIMED_OUT: "failed",  # v1 has no timeout status
}
RAW_STATUS = {  # /api/job/{id}/status, the backend's own strings (docs snippet 2026-08)
    state.QUEUED: "queued_waiting",
    state.RUNNING: "executing",
    state.SUCCEEDED: "success",
    state.FAILED: "error",
    state.CANCELLED: "cancelled",
    state.TIMED_OUT: "lost",
}
V2_STATUS = {
    state.QUEUED: "queued",
    state.RUNNING: "running",
    state.SUCCEEDED: "succeeded",
    state.FAILED: "failed",
    state.CANCELLED: "canceled",
    state.TIMED_OUT: "expired",
}


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def ms(ts: float | None) -> int | None:
    return None if ts is None else int(ts * 1000)


def v1_denied(request: web.Request) -> web.Response | None:
    if request.headers.get("X-API-Key") != request.app[STATE].secrets[KIND].get("api_key"):
        return web.json_response({"code": "UNAUTHORIZED", "message": "Invalid or missing API key"}, status=401)
    return None


def v2_denied(request: web.Request) -> web.Response | None:
    if request.headers.get("Authorization") != f"Bearer {request.app[STATE].secrets[KIND].get('api_key')}":
        return v2_error(401, "unauthorized", "Invalid or missing API key")
    return None


def v2_error(status: int, code: str, message: str, details: Any = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "details": details}}, status=status)


def rendered(request: web.Request, run: FakeRun) -> tuple[str, float]:
    stale = bool(is_stale(request))
    return run.phase_seen(stale), as_of(run, stale)


async def read_json(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None


# -- v1 ----------------------------------------------------------------------------------------


def node_errors(graph: dict[str, Any]) -> dict[str, Any]:
    """ComfyUI-style validation: a node without class_type is an invalid prompt."""
    return {
        str(node_id): {
            "errors": [
                {"type": "invalid_prompt", "message": "Node has no class_type", "details": "", "extra_info": {}}
            ],
            "dependent_outputs": [],
            "class_type": None,
        }
        for node_id, node in graph.items()
        if not isinstance(node, dict) or not node.get("class_type")
    }


async def post_prompt(request: web.Request) -> web.Response:
    if (denied := v1_denied(request)) is not None:
        return denied
    body = await read_json(request)
    graph = body.get("prompt") if isinstance(body, dict) else None
    if not isinstance(graph, dict) or not graph:
        error = {"type": "no_prompt", "message": "No prompt provided", "details": "", "extra_info": {}}
        return web.json_response({"error": error, "node_errors": {}}, status=400)
    if errors := node_errors(graph):
        error = {"type": "invalid_prompt", "message": "Invalid prompt", "details": "", "extra_info": {}}
        return web.json_response({"error": error, "node_errors": errors}, status=400)
    run = add_run(request, graph)
    return web.json_response({"prompt_id": run.external_id, "number": len(request.app[STATE].runs), "node_errors": {}})


def add_run(request: web.Request, graph: dict[str, Any]) -> FakeRun:
    fake_state = request.app[STATE]
    return fake_state.add_run(KIND, script=script_for_workflow(graph, fake_state.default_script), workflow=graph)


def v1_entry(run: FakeRun, phase: str, now: float) -> dict[str, Any]:
    """JobEntry (list) fields; execution times only for terminal states (spec)."""
    entry: dict[str, Any] = {
        "id": run.external_id,
        "status": V1_STATUS.get(phase, phase),
        "create_time": int(run.created),
    }
    if phase in state.TERMINAL:
        entry["execution_start_time"] = ms(run.entered(state.RUNNING, now))
        entry["execution_end_time"] = ms(run.finished_at(now))
        count, preview = outputs_summary(v1_outputs(run)) if phase == state.SUCCEEDED else (0, None)
        entry["outputs_count"], entry["preview_output"] = count, preview
        if phase == state.FAILED and run.error:
            entry["execution_error"] = execution_error(run)
    return {k: v for k, v in entry.items() if v is not None}


def execution_error(run: FakeRun) -> dict[str, Any]:
    return {**(run.error or {}), "current_inputs": {}, "current_outputs": {}}


def v1_detail(run: FakeRun, phase: str, now: float) -> dict[str, Any]:
    detail = v1_entry(run, phase, now)
    detail.pop("execution_start_time", None)
    detail.pop("execution_end_time", None)
    changed = run.finished_at(now) or run.entered(phase, now) or run.created
    detail.update(update_time=int(changed), workflow={"prompt": run.workflow})
    if phase in state.TERMINAL:
        detail["execution_status"] = execution_status(run, phase, now)
        detail["outputs"] = v1_outputs(run) if phase == state.SUCCEEDED else {}
    return detail


def execution_status(run: FakeRun, phase: str, now: float) -> dict[str, Any]:
    messages: list[list[Any]] = []
    if (started := run.entered(state.RUNNING, now)) is not None:
        messages.append(["execution_start", {"prompt_id": run.external_id, "timestamp": ms(started)}])
    end = {"prompt_id": run.external_id, "timestamp": ms(run.finished_at(now))}
    if phase == state.SUCCEEDED:
        messages.append(["execution_success", end])
    elif phase == state.FAILED:
        messages.append(["execution_error", {**execution_error(run), **end}])
    elif phase == state.CANCELLED and started is not None:
        messages.append(["execution_interrupted", end])
    status_str = "success" if phase == state.SUCCEEDED else "error"
    return {"status_str": status_str, "completed": phase == state.SUCCEEDED, "messages": messages}


def v1_outputs(run: FakeRun) -> dict[str, Any]:
    images = [{"filename": name, "subfolder": run.external_id, "type": "output"} for name in run.output_names()]
    return {"9": {"images": images}}


def v1_job_in_path(request: web.Request) -> FakeRun | web.Response:
    """The job the path names, or the v1 answer refusing the request (no key, unknown job)."""
    if (denied := v1_denied(request)) is not None:
        return denied
    run = request.app[STATE].get(KIND, request.match_info["job_id"])
    if run is None:
        return web.json_response({"code": "NOT_FOUND", "message": "Job not found"}, status=404)
    return run


async def get_job(request: web.Request) -> web.Response:
    run = v1_job_in_path(request)
    if isinstance(run, web.Response):
        return run
    phase, now = rendered(request, run)
    return web.json_response(v1_detail(run, phase, now))


async def get_job_status(request: web.Request) -> web.Response:
    run = v1_job_in_path(request)
    if isinstance(run, web.Response):
        return run
    phase, now = rendered(request, run)
    changed = iso(run.finished_at(now) or run.entered(phase, now) or run.created)
    error = (run.error or {}).get("exception_message") if phase == state.FAILED else None
    body = {
        "id": run.external_id,
        "status": RAW_STATUS.get(phase, phase),
        "created_at": iso(run.created),
        "updated_at": changed,
        "last_state_update": changed,
        "assigned_inference": None,
        "error_message": error,
    }
    return web.json_response(body)


async def list_jobs(request: web.Request) -> web.Response:
    if (denied := v1_denied(request)) is not None:
        return denied
    wanted = {s for s in request.query.get("status", "").split(",") if s}
    try:
        offset = max(int(request.query.get("offset", 0)), 0)
        limit = min(max(int(request.query.get("limit", 100)), 1), 1000)
    except ValueError:
        return web.json_response({"code": "BAD_REQUEST", "message": "offset/limit must be integers"}, status=400)
    # One phase per run for the filter, and only the page rendered: the sync benchmark lists 10,000s of
    # jobs, and the fake's CPU competes with the engine's on the same cores.
    stale, now = is_stale(request), time.time()
    matching = []
    for run in request.app[STATE].of_kind(KIND, now):
        phase = run.phase_seen(stale, now)
        if not wanted or V1_STATUS.get(phase, phase) in wanted:
            matching.append((run.created, phase, run))
    matching.sort(key=lambda item: item[0], reverse=request.query.get("sort_order", "desc") != "asc")
    entries = [v1_entry(run, phase, as_of(run, stale)) for _, phase, run in matching[offset : offset + limit]]
    total = len(matching)
    pagination = {"offset": offset, "limit": limit, "total": total, "has_more": offset + limit < total}
    return web.json_response({"jobs": entries, "pagination": pagination})


async def post_queue(request: web.Request) -> web.Response:
    """{"delete": [ids]} or {"clear": true}: pending jobs only."""
    if (denied := v1_denied(request)) is not None:
        return denied
    body = await read_json(request) or {}
    runs = request.app[STATE].of_kind(KIND)
    targets = runs if body.get("clear") else [r for r in runs if r.external_id in set(body.get("delete") or [])]
    deleted = []
    for run in targets:
        if run.phase() == state.QUEUED:
            run.force(state.CANCELLED)
            deleted.append(run.external_id)
    return web.json_response({"deleted": deleted, "cleared": bool(body.get("clear"))})


async def post_interrupt(request: web.Request) -> web.Response:
    """Interrupts *every* running job of the user (there is no per-job interrupt in v1)."""
    if (denied := v1_denied(request)) is not None:
        return denied
    for run in request.app[STATE].of_kind(KIND):
        if run.phase() == state.RUNNING:
            run.force(state.CANCELLED)
    return web.Response(status=200)


async def view(request: web.Request) -> web.StreamResponse:
    """302 to a signed file URL (or the bytes with `channel`); subfolder carries the job id here."""
    if (denied := v1_denied(request)) is not None:
        return denied
    filename, subfolder = request.query.get("filename", ""), request.query.get("subfolder", "")
    run = request.app[STATE].get(KIND, subfolder)
    if run is None or filename not in run.output_names() or run.phase() != state.SUCCEEDED:
        return web.json_response({"code": "NOT_FOUND", "message": "File not found"}, status=404)
    if request.query.get("channel"):
        body = png_bytes(files.output_seed(KIND, run.external_id, filename))
        return web.Response(body=body, content_type="image/png")
    location = files.file_url(request, KIND, run.external_id, filename, keyless=True)
    return web.Response(status=302, headers={"Location": location})


# -- v2 ----------------------------------------------------------------------------------------


def v2_job(request: web.Request, run: FakeRun, phase: str, now: float) -> dict[str, Any]:
    path = f"/api/v2/jobs/{run.external_id}"
    return {
        "id": run.external_id,
        "status": V2_STATUS.get(phase, phase),
        "created_at": iso(run.created),
        "started_at": iso(run.entered(state.RUNNING, now)) if phase != state.QUEUED else None,
        "completed_at": iso(run.finished_at(now)) if phase in state.TERMINAL else None,
        "expires_at": iso(run.created + 7 * 86400),
        "queue_position": queue_position(request, run) if phase == state.QUEUED else None,
        "progress": v2_progress(run, phase, now),
        "outputs": v2_outputs(request, run) if phase == state.SUCCEEDED else [],
        "error": v2_job_error(run) if phase == state.FAILED else None,
        "metrics": v2_metrics(run, phase, now),
        "urls": {"self": path, "events": f"{path}/events", "cancel": f"{path}/cancel"},
    }


def v2_metrics(run: FakeRun, phase: str, now: float) -> dict[str, int | None]:
    started, finished = run.entered(state.RUNNING, now), run.finished_at(now) if phase in state.TERMINAL else None
    return {
        "queue_ms": round((started - run.created) * 1000) if started else None,
        "execution_ms": round((finished - started) * 1000) if started and finished else None,
    }


def queue_position(request: web.Request, run: FakeRun) -> int:
    queued = sorted((r for r in request.app[STATE].of_kind(KIND) if r.phase() == state.QUEUED), key=lambda r: r.created)
    return next((i for i, r in enumerate(queued) if r is run), 0)


def v2_progress(run: FakeRun, phase: str, now: float) -> dict[str, Any] | None:
    if phase == state.QUEUED:
        return None
    done = phase == state.SUCCEEDED
    return {
        "value": run.progress(now),
        "nodes_done": 2 if done else 1,
        "nodes_total": 2,
        "current_node": None if done else "3",
        "current_node_class": None if done else "KSampler",
        "step": None,
        "steps": None,
        "message": None if done else "KSampler",
    }


def v2_job_error(run: FakeRun) -> dict[str, Any]:
    error = run.error or {}
    return {
        "code": "node_execution_error",
        "message": error.get("exception_message", "failed"),
        "node_id": error.get("node_id"),
        "class_type": error.get("node_type"),
        "traceback": "".join(error.get("traceback") or []) or None,
    }


def v2_outputs(request: web.Request, run: FakeRun) -> list[dict[str, Any]]:
    outputs = []
    for index, name in enumerate(run.output_names()):
        url = files.file_url(request, KIND, run.external_id, name, ttl=3600)
        outputs.append(
            {
                "node_id": "9",
                "name": name,
                "type": "image",
                "content_type": "image/png",
                "size_bytes": len(png_bytes(files.output_seed(KIND, run.external_id, name))),
                "id": f"{run.external_id}-out-{index}",
                "hash": None,
                "url": url,
                "url_expires_at": iso(files.url_expiry(url)),
                "job_id": run.external_id,
            }
        )
    return outputs


async def v2_submit(request: web.Request) -> web.Response:
    if (denied := v2_denied(request)) is not None:
        return denied
    body = await read_json(request)
    graph = body.get("workflow") if isinstance(body, dict) else None
    if not isinstance(graph, dict) or not graph:
        return v2_error(422, "invalid_workflow", "workflow is required")
    if "nodes" in graph and "links" in graph:
        return v2_error(422, "workflow_format_ui", "UI-format workflow; export the API format")
    if errors := node_errors(graph):
        return v2_error(422, "invalid_workflow", "Invalid workflow", {"node_errors": errors})
    seen = request.app[IDEMPOTENCY]
    key = request.headers.get("Idempotency-Key")
    if key and seen.get(key) in {run_id for _, run_id in request.app[STATE].runs}:
        return v2_error(422, "idempotency_key_reuse", "Idempotency-Key was already used")
    run = add_run(request, graph)
    if key:
        seen[key] = run.external_id
    return web.json_response(v2_job(request, run, run.phase(), time.time()), status=201)


def v2_job_in_path(request: web.Request) -> FakeRun | web.Response:
    """The job the path names, or the v2 answer refusing the request (no key, unknown job)."""
    if (denied := v2_denied(request)) is not None:
        return denied
    run = request.app[STATE].get(KIND, request.match_info["job_id"])
    if run is None:
        return v2_error(404, "not_found", "Job not found")
    return run


async def v2_get(request: web.Request) -> web.Response:
    run = v2_job_in_path(request)
    if isinstance(run, web.Response):
        return run
    phase, now = rendered(request, run)
    return web.json_response(v2_job(request, run, phase, now))


async def v2_workflow(request: web.Request) -> web.Response:
    """The job's workflow sub-resource: jobs submitted through the API get `format: api`, the graph they
    ran (only jobs pinned to an editor version get `save`, which the fake has none of)."""
    run = v2_job_in_path(request)
    if isinstance(run, web.Response):
        return run
    return web.json_response({"workflow": run.workflow, "format": "api"})


async def v2_cancel(request: web.Request) -> web.Response:
    run = v2_job_in_path(request)
    if isinstance(run, web.Response):
        return run
    if run.phase() not in state.TERMINAL:
        run.force(state.CANCELLED)
    return web.json_response(v2_job(request, run, run.phase(), time.time()))


def setup(app: web.Application, fake_state: FakeState) -> None:
    app[STATE] = fake_state
    app[IDEMPOTENCY] = {}
    app.router.add_post("/api/prompt", post_prompt)
    app.router.add_get("/api/jobs", list_jobs)
    app.router.add_get("/api/jobs/{job_id}", get_job)
    app.router.add_get("/api/job/{job_id}/status", get_job_status)
    app.router.add_post("/api/queue", post_queue)
    app.router.add_post("/api/interrupt", post_interrupt)
    app.router.add_get("/api/view", view)
    app.router.add_post("/api/v2/jobs", v2_submit)
    app.router.add_get("/api/v2/jobs/{job_id}", v2_get)
    app.router.add_get("/api/v2/jobs/{job_id}/workflow", v2_workflow)
    app.router.add_post("/api/v2/jobs/{job_id}/cancel", v2_cancel)
