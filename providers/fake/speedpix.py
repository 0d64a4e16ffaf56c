"""Fake Alibaba Cloud SpeedPix (docs/providers.md): `/scc/comfy_prompt`, `/scc/comfy_get_progress`,
`/scc/comfy_get_result`, behind a fake API Gateway that VERIFIES the HMAC-SHA256 digest signature
and content-md5 the way Alibaba API Gateway does.

Gateway failures are answered like the real gateway: an HTTP error with `X-Ca-Error-Code` and
`X-Ca-Error-Message` headers and an empty body (A403IS "Invalid Signature" is documented; the codes
for a bad AppKey, Content-MD5 and timestamp are approximations).

Fake choices: SpeedPix runs published workflows by id, so the fake fails a task whose workflow_id is
"FakeFail" (the same switch as a FakeFail node elsewhere). Failed tasks answer get_result with the
envelope's status 20 and the node error in subErrCode/subErrMessage. A CANCELLED run answers `canceled`
(the Python SDK's spelling).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from typing import Any

from aiohttp import web

from providers.fake import state as S
from providers.fake.files import file_url
from providers.fake.server import STATE_KEY
from providers.fake.state import FakeRun, is_stale, script_for_workflow

KIND = "speedpix"
JSON_TYPE = "application/json; charset=utf-8"
_SIGNED = ("x-ca-key", "x-ca-nonce", "x-ca-signature-method", "x-ca-timestamp")
_REQUIRED = ("x-ca-key", "x-ca-signature", "x-ca-timestamp", "x-ca-nonce", "date")
_MAX_SKEW_MS = 15 * 60 * 1000  # the gateway's documented timestamp window


def setup(app: web.Application, state: object) -> None:
    app.middlewares.append(_gateway)
    app.router.add_post("/scc/comfy_prompt", comfy_prompt)
    app.router.add_post("/scc/comfy_get_progress", comfy_get_progress)
    app.router.add_post("/scc/comfy_get_result", comfy_get_result)


def _gateway_error(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        headers={"X-Ca-Error-Code": code, "X-Ca-Error-Message": message, "X-Ca-Request-Id": str(uuid.uuid4())},
    )


def string_to_sign(request: web.Request, content_md5: str) -> str:
    """Server side of the digest: method, Accept, Content-MD5, Content-Type, Date, the signed x-ca-*
    headers sorted by name, then the path (no query)."""
    names = sorted(h.strip().lower() for h in request.headers.get("x-ca-signature-headers", "").split(",") if h.strip())
    lines = [
        request.method,
        request.headers.get("Accept", ""),
        content_md5,
        request.headers.get("Content-Type", ""),
        request.headers.get("date", ""),
    ]
    lines += [f"{name}:{request.headers.get(name, '')}" for name in names]
    lines.append(request.path)
    return "\n".join(lines)


@web.middleware
async def _gateway(request: web.Request, handler: Any) -> web.StreamResponse:
    secret = request.app[STATE_KEY].secrets[KIND]
    missing = next((h for h in _REQUIRED if not request.headers.get(h)), None)
    if missing:
        return _gateway_error(400, "I400MH", f"Header `{missing}` is Required")
    if request.headers["x-ca-key"] != secret.get("app_key"):
        return _gateway_error(400, "A400IK", "Invalid AppKey")
    body = await request.read()
    content_md5 = request.headers.get("content-md5", "")
    if body and content_md5 != base64.b64encode(hashlib.md5(body).digest()).decode():  # noqa: S324 — the protocol's
        return _gateway_error(400, "A400IC", "Invalid Content-MD5")
    if (
        not request.headers["x-ca-timestamp"].isdigit()
        or abs(int(request.headers["x-ca-timestamp"]) - time.time() * 1000) > _MAX_SKEW_MS
    ):
        return _gateway_error(400, "A400IT", "Invalid Timestamp")
    signed = set(request.headers.get("x-ca-signature-headers", "").replace(" ", "").lower().split(","))
    if not set(_SIGNED) <= signed:
        return _gateway_error(400, "I400HD", "Invalid Header `x-ca-signature-headers` incomplete")
    to_sign = string_to_sign(request, content_md5)
    expected = hmac.new(secret.get("app_secret", "").encode(), to_sign.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(base64.b64encode(expected).decode(), request.headers["x-ca-signature"]):
        # The real gateway echoes its StringToSign with the newlines replaced.
        echoed = to_sign.replace("\n", "#")
        return _gateway_error(403, "A403IS", f"Invalid Signature, Server StringToSign:`{echoed}`")
    return await handler(request)


def _ok(data: Any) -> web.Response:
    return web.json_response({"status": 10, "apiInvokeId": f"i_{uuid.uuid4().hex[:24]}", "data": data})


def _fail(err_code: str, err_message: str, sub_code: str, sub_message: str) -> web.Response:
    return web.json_response(
        {
            "status": 20,
            "apiInvokeId": f"i_{uuid.uuid4().hex[:24]}",
            "errCode": err_code,
            "errMessage": err_message,
            "subErrCode": sub_code,
            "subErrMessage": sub_message,
        }
    )


def _not_found(task_id: Any) -> web.Response:
    return _fail("TASK_NOT_FOUND", "task not found", "TaskNotExist", f"task {task_id} does not exist")


async def _task(request: web.Request) -> tuple[FakeRun | None, Any]:
    body = await request.json()
    task_id = body.get("taskId") if isinstance(body, dict) else None
    run = request.app[STATE_KEY].get(KIND, task_id) if isinstance(task_id, str) else None
    return run, task_id


def _status(request: web.Request, run: FakeRun) -> str:
    phase = run.phase_seen(is_stale(request))
    return {S.QUEUED: "waiting", S.RUNNING: "running", S.SUCCEEDED: "succeeded", S.CANCELLED: "canceled"}.get(
        phase, "failed"
    )


async def comfy_prompt(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await request.json()
    workflow_id = body.get("workflow_id") if isinstance(body, dict) else None
    if not workflow_id or not (body.get("alias_id") or body.get("version_id")):
        return _fail("InvalidParameter", "invalid parameter", "MissingParameter", "workflow_id and alias_id required")
    script = script_for_workflow({"1": {"class_type": workflow_id}}, state.default_script)
    error = {**S.default_error(), "node_id": "1", "node_type": "FakeFail"} if workflow_id == "FakeFail" else None
    run = state.add_run(
        KIND,
        uuid.uuid4().hex,
        script=script,
        error=error,
        workflow={"workflow_id": workflow_id, "alias_id": body.get("alias_id")},
        inputs=body.get("inputs") or {},
    )
    return _ok({"taskId": run.external_id, "status": "waiting", "estimatedDurationInSeconds": 1.5})


async def comfy_get_progress(request: web.Request) -> web.Response:
    run, task_id = await _task(request)
    if run is None:
        return _not_found(task_id)
    status = _status(request, run)
    progress = 1 if status == "succeeded" else run.progress()
    return _ok({"taskId": run.external_id, "progress": progress, "etaRelative": 0, "message": "", "status": status})


async def comfy_get_result(request: web.Request) -> web.Response:
    run, task_id = await _task(request)
    if run is None:
        return _not_found(task_id)
    status = _status(request, run)
    if status == "failed":
        error = run.error or S.default_error()
        return _fail(
            "TASK_FAILED",
            "task failed",
            str(error["exception_type"]),
            f"{error['node_type']} (node {error['node_id']}): {error['exception_message']}",
        )
    data: dict[str, Any] = {"status": status, "taskId": run.external_id}
    if status == "succeeded":
        begin, end = run.entered(S.RUNNING) or run.created, run.finished_at() or time.time()
        urls = [file_url(request, KIND, run.external_id, name, ttl=3600) for name in run.output_names()]
        data.update(
            {
                "taskDuration": int((end - begin) * 1000),
                "taskBeginTime": int(begin * 1000),
                "taskEndTime": int(end * 1000),
                "images": urls,
            }
        )
        # The docs' custom output field: the same file again, with metadata.
        data["result"] = (
            {
                "poster": {
                    "url": urls[0],
                    "type": "image",
                    "filename": run.output_names()[0],
                    "format": "png",
                    "width": 64,
                    "height": 64,
                }
            }
            if urls
            else {}
        )
    return _ok(data)
