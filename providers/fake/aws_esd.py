"""Fake AWS ESD ComfyUI API (docs/providers.md): `/executes` behind an API Gateway stage, shaped like
providers/tests/provider_data/fixtures/aws-esd/. Every Lambda answer is the `{statusCode, debug, data, message}`
envelope; API Gateway's own errors are `{message, requestId}`.

Fake choices: async endpoints only (201, `start_time` stays ''); a CANCELLED run (ESD has no cancel)
and a TIMED_OUT one render as `failed` with a message.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from providers.fake import state as S
from providers.fake.files import file_url
from providers.fake.server import STATE_KEY
from providers.fake.state import FakeRun, is_stale, script_for_workflow

KIND = "aws_esd"
_REQUIRED = ("prompt_id", "prompt", "need_sync", "endpoint_name")
_DEBUG = {"function_url": "https://console.aws.amazon.com/lambda/fake", "log_url": None, "trace_url": None}


def setup(app: web.Application, state: object) -> None:
    app.middlewares.append(_api_key)
    app.router.add_post("/executes", post_execute)
    app.router.add_get("/executes", list_executes)
    app.router.add_get("/executes/{prompt_id}", get_execute)


@web.middleware
async def _api_key(request: web.Request, handler: Any) -> web.StreamResponse:
    """API Gateway checks x-api-key before any Lambda runs (apiKeyRequired: true)."""
    expected = request.app[STATE_KEY].secrets[KIND].get("api_key")
    if request.headers.get("x-api-key") != expected:
        return _gateway_error(403, "Forbidden")
    return await handler(request)


def _gateway_error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message, "requestId": str(uuid.uuid4())}, status=status)


def _envelope(status: int, data: Any, message: str) -> web.Response:
    return web.json_response({"statusCode": status, "debug": _DEBUG, "data": data, "message": message}, status=status)


def _naive_iso(at: float | None) -> str | None:
    # ESD Lambdas write datetime.now().isoformat() in UTC: naive, with microseconds.
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


async def post_execute(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        body = await request.json()
    except ValueError:
        return web.json_response(
            {"statusCode": 400, "message": "Invalid request body", "requestId": "fake"}, status=400
        )
    missing = [key for key in _REQUIRED if not isinstance(body, dict) or key not in body]
    if missing:
        # API Gateway model validation (create_excute.ts), as in gateway_error_400_validation.json.
        quoted = ",".join(f'\\"{key}\\"' for key in missing)
        message = f"[object has missing required properties ([{quoted}])]"
        return web.json_response({"statusCode": 400, "message": message, "requestId": str(uuid.uuid4())}, status=400)
    workflow = body["prompt"] if isinstance(body["prompt"], dict) else {}
    run = state.add_run(
        KIND,
        str(body["prompt_id"]),
        script=script_for_workflow(workflow, state.default_script),
        workflow=workflow,
        inputs={"endpoint_name": body["endpoint_name"]},
    )
    return _envelope(201, _item(request, run, summary=True), "Created")


async def get_execute(request: web.Request) -> web.Response:
    prompt_id = request.match_info["prompt_id"]
    run = request.app[STATE_KEY].get(KIND, prompt_id)
    if run is None:
        return _envelope(404, f"execute not found for prompt_id: {prompt_id}", "Not Found")
    return _envelope(200, _item(request, run), "OK")


async def list_executes(request: web.Request) -> web.Response:
    runs = request.app[STATE_KEY].of_kind(KIND)
    try:
        limit = max(1, min(int(request.query.get("limit", "10")), 100))
    except ValueError:
        limit = 10
    executes = [_item(request, run, summary=True) for run in runs[:limit]]
    return _envelope(200, {"executes": executes, "last_evaluated_key": None}, "OK")


def _item(request: web.Request, run: FakeRun, summary: bool = False) -> dict[str, Any]:
    phase = run.phase_seen(is_stale(request))
    status = {S.QUEUED: "created", S.RUNNING: "created", S.SUCCEEDED: "success"}.get(phase, "failed")
    done = status != "created"
    files = [file_url(request, KIND, run.external_id, name, ttl=3600) for name in run.output_names()]
    item: dict[str, Any] = {
        "prompt_id": run.external_id,
        "endpoint_name": run.inputs.get("endpoint_name"),
        "status": status,
        "create_time": _naive_iso(run.created),
        "start_time": "",
        "complete_time": _naive_iso(run.finished_at()) if done else None,
        "need_sync": False,
        "output_path": f"s3://fake-bucket/comfy/output/{run.external_id}" if status == "success" else "",
        "output_files": files if status == "success" else [],
        "temp_path": "",
        "temp_files": [],
        "message": _message(run, phase) if status == "failed" else None,
    }
    if not summary:
        item.update(
            {
                "inference_type": "Async",
                "prompt_params": {"prompt": str(run.workflow)},
                "sagemaker_raw": {},
                "multi_async": False,
                "batch_id": "",
                "workflow": None,
                "instance_id": None,
            }
        )
    return item


def _message(run: FakeRun, phase: str) -> str:
    if phase == S.CANCELLED:
        return "execution interrupted"
    if phase == S.TIMED_OUT:
        return "inference timed out"
    error = run.error or S.default_error()
    return f"{error['node_type']} (node {error['node_id']}): {error['exception_type']}: {error['exception_message']}"
