"""Fake self-hosted ComfyUI (docs/providers.md), shaped like the recorded 0.3.64 answers in
providers/tests/provider_data/recorded-comfyui/: `/prompt`, `/queue`, `/history`, `/interrupt`, `/view`,
`/system_stats`.

Fake choices:
- Output items use the run id as `subfolder`, so `/view` knows which run a file belongs to
  (every fake run names its files ComfyUI_00001_.png, …).
- Cancel forces CANCELLED for pending runs too, rendered like an interrupt. Real ComfyUI drops a deleted
  pending prompt without a history entry (the client then reports UNKNOWN); tests of that case use
  VANISHED instead.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from aiohttp import web

from providers.fake import state as S
from providers.fake.files import output_seed
from providers.fake.png import png_bytes
from providers.fake.server import STATE_KEY
from providers.fake.state import FakeRun, FakeState, is_stale, script_for_workflow

KIND = "comfyui"
_CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def setup(app: web.Application, state: FakeState) -> None:
    app.middlewares.append(_auth)
    app.router.add_post("/prompt", post_prompt)
    app.router.add_get("/queue", get_queue)
    app.router.add_post("/queue", post_queue)
    app.router.add_get("/history", get_history_list)
    app.router.add_get("/history/{prompt_id}", get_history)
    app.router.add_get("/api/jobs", get_jobs)
    app.router.add_post("/interrupt", post_interrupt)
    app.router.add_get("/view", get_view)
    app.router.add_get("/system_stats", get_system_stats)


@web.middleware
async def _auth(request: web.Request, handler: Any) -> web.StreamResponse:
    """No auth by default; with secrets {header, value} set, act like a reverse proxy that checks them."""
    secret = request.app[STATE_KEY].secrets.get(KIND) or {}
    if secret.get("header") and request.headers.get(secret["header"]) != secret.get("value"):
        return web.Response(status=401, text="401 Unauthorized")
    return await handler(request)


def _phase(request: web.Request, run: FakeRun) -> str:
    return run.phase_seen(is_stale(request))


def _error(kind: str, message: str, details: str = "", node_errors: dict[str, Any] | None = None) -> web.Response:
    body = {
        "error": {"type": kind, "message": message, "details": details, "extra_info": {}},
        "node_errors": node_errors or {},
    }
    return web.json_response(body, status=400)


# -- submit ------------------------------------------------------------------------------------


async def post_prompt(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        body = await request.json()
    except ValueError:
        return _error("invalid_prompt", "Invalid JSON")
    prompt = body.get("prompt") if isinstance(body, dict) else None
    if not isinstance(prompt, dict) or not prompt:
        return _error("no_prompt", "No prompt provided", "No prompt provided")
    for node_id, node in prompt.items():
        class_type = node.get("class_type") if isinstance(node, dict) else None
        if class_type in state.missing_node_types or not class_type:
            # recorded-comfyui/post_prompt_unknown_node.json
            return _error(
                "invalid_prompt", f"Cannot execute because node {class_type} does not exist.", f"Node ID '#{node_id}'"
            )
    node_errors = _validation_errors(prompt)
    if node_errors:
        # recorded-comfyui/post_prompt_validation_error.json
        return _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", "", node_errors)
    prompt_id = body.get("prompt_id") or str(uuid.uuid4())
    if not isinstance(prompt_id, str) or not _CANONICAL_UUID.match(prompt_id):
        return _error(
            "invalid_prompt_id",
            "prompt_id must be a valid UUID",
            "prompt_id must be a UUID string in canonical lowercase hyphenated form; "
            "omit it to let the server generate one",
        )
    run = state.add_run(
        KIND,
        prompt_id,
        script=script_for_workflow(prompt, state.default_script),
        workflow=prompt,
        error=_fail_error(prompt),
    )
    run.inputs = {"client_id": body.get("client_id")}
    return web.json_response({"prompt_id": run.external_id, "number": run.number, "node_errors": {}})


def _validation_errors(prompt: dict[str, Any]) -> dict[str, Any]:
    """ComfyUI's input validation, for the one case the fake knows: LoadImage of a file it does not have
    (any name starting "missing" or "does_not_exist")."""
    errors: dict[str, Any] = {}
    for node_id, node in prompt.items():
        if not isinstance(node, dict):
            continue
        inputs = node["inputs"] if isinstance(node.get("inputs"), dict) else {}
        image = inputs.get("image")
        if node.get("class_type") == "LoadImage" and str(image).startswith(("missing", "does_not_exist")):
            error = {
                "type": "custom_validation_failed",
                "message": "Custom validation failed for node",
                "details": f"image - Invalid image file: {image}",
                "extra_info": {"input_name": "image"},
            }
            errors[str(node_id)] = {"errors": [error], "dependent_outputs": ["9"], "class_type": "LoadImage"}
    return errors


def _fail_error(prompt: dict[str, Any]) -> dict[str, Any] | None:
    """The FakeFail node is where the run fails."""
    for node_id, node in prompt.items():
        if isinstance(node, dict) and node.get("class_type") == "FakeFail":
            return {**S.default_error(), "node_id": str(node_id), "node_type": "FakeFail"}
    return None


# -- queue and cancel --------------------------------------------------------------------------


async def get_queue(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    running: list[list[Any]] = []
    pending: list[list[Any]] = []
    now, stale = time.time(), is_stale(request)
    for run in state.of_kind(KIND, now):
        phase = run.phase_seen(stale, now)
        if phase in (S.RUNNING, S.QUEUED):
            item = [
                run.number,
                run.external_id,
                run.workflow,
                {"client_id": run.inputs.get("client_id"), "create_time": int(run.created * 1000)},
                _output_nodes(run),
            ]
            (running if phase == S.RUNNING else pending).append(item)
    # ComfyUI answers the pending heap as-is; reversing keeps clients honest about sorting by number.
    return web.json_response({"queue_running": running, "queue_pending": pending[::-1]})


async def post_queue(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await request.json()
    ids = (body.get("delete") or []) if isinstance(body, dict) else []
    if isinstance(body, dict) and body.get("clear"):
        ids = [run.external_id for run in state.of_kind(KIND)]
    for external_id in ids:
        run = state.get(KIND, external_id)
        if run is not None and run.phase() == S.QUEUED:
            run.force(S.CANCELLED)
    return web.Response(status=200)


async def post_interrupt(request: web.Request) -> web.Response:
    """With a prompt_id, interrupt only if that prompt is running; without, whatever is running."""
    state = request.app[STATE_KEY]
    try:
        body = await request.json()
    except ValueError:
        body = {}
    wanted = body.get("prompt_id") if isinstance(body, dict) else None
    for run in state.of_kind(KIND):
        if run.phase() == S.RUNNING and (wanted is None or wanted == run.external_id):
            run.force(S.CANCELLED)
    return web.Response(status=200)


# -- history -----------------------------------------------------------------------------------


async def get_history(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    run = state.get(KIND, request.match_info["prompt_id"])
    if run is None or _phase(request, run) not in S.TERMINAL:
        return web.json_response({})
    return web.json_response({run.external_id: _history_entry(request, run)})


async def get_history_list(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    finished = [run for run in state.of_kind(KIND) if _phase(request, run) in S.TERMINAL]
    try:
        max_items = int(request.query.get("max_items", "0"))
    except ValueError:
        max_items = 0
    if max_items > 0:
        finished = finished[-max_items:]
    return web.json_response({run.external_id: _history_entry(request, run) for run in finished})


# -- jobs (recent ComfyUI builds; `FakeState.comfyui_jobs_api = False` plays an older one) ----------

_JOB_STATUS = {S.QUEUED: "pending", S.RUNNING: "in_progress"}


async def get_jobs(request: web.Request) -> web.Response:
    """comfy_execution/jobs.py get_all_jobs: queue items and history entries as job dicts, filtered by
    comma-separated statuses, sorted by create_time, then offset/limit."""
    state = request.app[STATE_KEY]
    if not state.comfyui_jobs_api:
        return web.Response(status=404, text="404: Not Found")
    wanted = {s.strip() for s in request.query.get("status", "").split(",") if s.strip()}
    try:
        offset = max(int(request.query.get("offset", 0)), 0)
        limit = int(request.query["limit"]) if "limit" in request.query else None
    except ValueError:
        return web.json_response({"error": "limit and offset must be integers"}, status=400)
    # One clock for the whole answer, and only the page rendered: the sync benchmark lists 10,000s of
    # jobs, and the fake's CPU competes with the engine's on the same cores.
    now, stale, matching = time.time(), is_stale(request), []
    for run in state.of_kind(KIND, now):
        phase = run.phase_seen(stale, now)
        status = _JOB_STATUS.get(phase) or _history_job_status(phase)
        if not wanted or status in wanted:
            matching.append((run.created, run, phase, status))
    matching.sort(key=lambda item: item[0], reverse=request.query.get("sort_order", "desc") != "asc")
    page = matching[offset:] if limit is None else matching[offset : offset + limit]
    jobs = [_job(run, phase, status, now) for _, run, phase, status in page]
    more = limit is not None and offset + limit < len(matching)
    pagination = {"offset": offset, "limit": limit, "total": len(matching), "has_more": more}
    return web.json_response({"jobs": jobs, "pagination": pagination})


def _history_job_status(phase: str) -> str:
    return {S.SUCCEEDED: "completed", S.CANCELLED: "cancelled"}.get(phase, "failed")


def _job(run: FakeRun, phase: str, status: str, now: float) -> dict[str, Any]:
    """A job entry, built from the same messages and outputs as the run's history entry."""
    job: dict[str, Any] = {"id": run.external_id, "status": status, "priority": run.number}
    job["create_time"] = int(run.created * 1000)
    if phase not in S.TERMINAL:
        return {**job, "outputs_count": 0, "previewable_outputs_count": 0}
    for event, data in _messages(run, phase, now):
        if event == "execution_start":
            job["execution_start_time"] = data["timestamp"]
        elif event in ("execution_success", "execution_error", "execution_interrupted"):
            job["execution_end_time"] = data["timestamp"]
            if event == "execution_error":
                job["execution_error"] = data
    count, preview = outputs_summary(_outputs(run) if phase == S.SUCCEEDED else {})
    job.update(outputs_count=count, previewable_outputs_count=count)
    if preview is not None:
        job["preview_output"] = preview
    return job


def outputs_summary(outputs: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
    """comfy_execution/jobs.py get_outputs_summary for the fakes' outputs (all saved images): every file
    item counts, and the first is the preview, tagged with its node and media type."""
    items = [
        {**item, "nodeId": node_id, "mediaType": media}
        for node_id, node in outputs.items()
        for media, values in node.items()
        if media != "animated"
        for item in values
        if isinstance(item, dict)
    ]
    return len(items), (items[0] if items else None)


def _history_entry(request: web.Request, run: FakeRun) -> dict[str, Any]:
    phase = _phase(request, run)
    extra = {"client_id": run.inputs.get("client_id"), "create_time": int(run.created * 1000)}
    return {
        "prompt": [run.number, run.external_id, run.workflow, extra, _output_nodes(run)],
        "outputs": _outputs(run) if phase == S.SUCCEEDED else {},
        "status": {
            "status_str": "success" if phase == S.SUCCEEDED else "error",
            "completed": phase == S.SUCCEEDED,
            "messages": _messages(run, phase),
        },
        "meta": {},
    }


def _messages(run: FakeRun, phase: str, now: float | None = None) -> list[list[Any]]:
    now = time.time() if now is None else now

    def ms(at: float | None) -> int:
        return int((at or now) * 1000)

    base = {"prompt_id": run.external_id}
    started = run.entered(S.RUNNING, now)
    finished = run.finished_at(now)
    messages: list[list[Any]] = []
    if started is not None:
        messages.append(["execution_start", {**base, "timestamp": ms(started)}])
        messages.append(["execution_cached", {**base, "nodes": [], "timestamp": ms(started)}])
    if phase == S.SUCCEEDED:
        messages.append(["execution_success", {**base, "timestamp": ms(finished)}])
    elif phase == S.CANCELLED:
        messages.append(
            [
                "execution_interrupted",
                {**base, "node_id": "2", "node_type": "SaveImage", "executed": [], "timestamp": ms(finished)},
            ]
        )
    else:  # failed, timed out (ComfyUI has no timeout of its own: it shows up as an error)
        error = run.error or S.default_error()
        messages.append(
            [
                "execution_error",
                {
                    **base,
                    **error,
                    "executed": [],
                    "current_inputs": {},
                    "current_outputs": [],
                    "timestamp": ms(finished),
                },
            ]
        )
    return messages


def _output_nodes(run: FakeRun) -> list[str]:
    return ["9"]


def _outputs(run: FakeRun) -> dict[str, Any]:
    images = [{"filename": name, "subfolder": run.external_id, "type": "output"} for name in run.output_names()]
    # A text entry and an `animated` flag ride along, as real nodes emit them: clients must skip them.
    return {"9": {"images": images, "animated": [False]}, "10": {"text": ["a caption"]}}


# -- files and health ---------------------------------------------------------------------------


async def get_view(request: web.Request) -> web.Response:
    filename, subfolder = request.query.get("filename", ""), request.query.get("subfolder", "")
    if not filename or ".." in filename or filename.startswith("/") or ".." in subfolder:
        return web.Response(status=400)
    run = request.app[STATE_KEY].get(KIND, subfolder)
    if run is None or filename not in run.output_names() or run.phase() != S.SUCCEEDED:
        return web.Response(status=404)
    return web.Response(body=png_bytes(output_seed(KIND, run.external_id, filename)), content_type="image/png")


async def get_system_stats(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "system": {
                "os": "posix",
                "comfyui_version": "0.3.64-fake",
                "python_version": "3.12",
                "embedded_python": False,
            },
            "devices": [{"name": "cpu", "type": "cpu", "index": None}],
        }
    )
