"""Fake ComfyDeploy API (docs/providers.md), mounted at /comfydeploy/api.

Shapes follow providers/tests/provider_data/fixtures/comfydeploy. A deployment's graph lives on the provider,
so submissions steer the fake through their inputs: an input whose value is "FakeFail" makes the run
fail (the same rule as `script_for_workflow`, applied to {input: {"class_type": value}}).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from aiohttp import web

from providers.fake import files, state
from providers.fake.state import FakeRun, FakeState, is_stale, script_for_workflow

KIND = "comfydeploy"
STATUS = {
    state.QUEUED: "queued",
    state.RUNNING: "running",
    state.SUCCEEDED: "success",
    state.FAILED: "failed",
    state.CANCELLED: "cancelled",
    state.TIMED_OUT: "timeout",
}
STATE = web.AppKey("comfydeploy_state", FakeState)


@lru_cache(maxsize=65536)
def iso(ts: float | None) -> str | None:
    """CD-api writes isoformat()[:-3] + "Z": milliseconds and Z. (Cached: a run's few timestamps are
    rendered on every poll, and the fake must stay cheap next to the engine it is measured against.)"""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@lru_cache(maxsize=4)
def _amz_date(now: int) -> str:
    return datetime.fromtimestamp(now, tz=UTC).strftime("%Y%m%dT%H%M%SZ")


def as_of(run: FakeRun, stale: bool) -> float:
    """The moment to render: now, or for a stale replica just before the latest change."""
    now = time.time()
    if stale:
        changes = [at for at, _ in run.timeline() if at <= now]
        if len(changes) > 1:
            return changes[-1] - 1e-3
    return now


def unauthorized(request: web.Request) -> web.Response | None:
    token = request.app[STATE].secrets[KIND].get("token", "")
    if request.headers.get("Authorization") != f"Bearer {token}":
        return web.json_response({"detail": "Invalid or expired token"}, status=401)
    return None


async def queue_run(request: web.Request) -> web.Response:
    if (denied := unauthorized(request)) is not None:
        return denied
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not body.get("deployment_id"):
        detail = [{"loc": ["body", "deployment_id"], "msg": "Field required", "type": "missing"}]
        return web.json_response({"detail": detail}, status=422)
    inputs = body.get("inputs") or {}
    steering = {str(k): {"class_type": v} for k, v in inputs.items() if isinstance(v, str)}
    fake_state = request.app[STATE]
    run = fake_state.add_run(
        KIND,
        script=script_for_workflow(steering, fake_state.default_script),
        workflow={"deployment_id": body["deployment_id"]},
        inputs=inputs,
    )
    return web.json_response({"run_id": run.external_id})


async def get_run(request: web.Request) -> web.Response:
    if (denied := unauthorized(request)) is not None:
        return denied
    run = request.app[STATE].get(KIND, request.match_info["run_id"])
    if run is None:
        return web.json_response({"detail": "Run not found"}, status=404)
    stale = bool(is_stale(request))
    phase = run.phase_seen(stale)
    return web.json_response(render_run(request, run, phase, as_of(run, stale)))


async def cancel_run(request: web.Request) -> web.Response:
    if (denied := unauthorized(request)) is not None:
        return denied
    run = request.app[STATE].get(KIND, request.match_info["run_id"])
    if run is None:
        # The quirk: the backend re-wraps its 404 as a 500 (docs/providers.md, ComfyDeploy "Cancel").
        detail = "Error cancel function 404: Run not found or has no modal function call ID"
        return web.json_response({"detail": detail}, status=500)
    if run.phase() not in state.TERMINAL:
        run.force(state.CANCELLED)
    return web.json_response({"status": "success", "message": "Function cancelled"})


def render_run(request: web.Request, run: FakeRun, phase: str, now: float) -> dict[str, Any]:
    error = run.error or {}
    live = {state.RUNNING: "Executing KSampler", state.SUCCEEDED: "Executing SaveImage"}.get(phase)
    if phase == state.FAILED:
        live = f"Executing {error.get('node_type') or 'KSampler'}"
    ended = run.finished_at(now) if phase in state.TERMINAL else None
    return {
        "id": run.external_id,
        "workflow_inputs": run.inputs,
        "origin": "api",
        "status": STATUS.get(phase, phase),
        "created_at": iso(run.created),
        "updated_at": iso(ended or run.entered(phase, now) or run.created),
        "queued_at": iso(run.entered(state.QUEUED, now)),
        "started_at": iso(run.entered(state.RUNNING, now)),
        "ended_at": iso(ended),
        "gpu": "A10G",
        # The run's GPU time (run_duration + cold_start_duration_total), once it has ended.
        "duration": gpu_duration(run, ended, now),
        "live_status": live,
        "progress": run.progress(now) if phase != state.FAILED else 0.45,
        "outputs": render_outputs(request, run) if phase == state.SUCCEEDED else [],
        "queue_position": 0 if phase == state.QUEUED and request.query.get("queue_position") == "true" else None,
    }


def gpu_duration(run: FakeRun, ended: float | None, now: float) -> float | None:
    started = run.entered(state.RUNNING, now)
    return round(ended - started, 3) if ended and started else None


def render_outputs(request: web.Request, run: FakeRun) -> list[dict[str, Any]]:
    rows = []
    for name in run.output_names():
        stamp = _amz_date(int(time.time()))
        # S3 SigV4-style query on top of the fake's own signature (serve_file ignores the extra keys).
        url = files.file_url(request, KIND, run.external_id, name, ttl=3600) + f"&X-Amz-Date={stamp}&X-Amz-Expires=3600"
        item = {
            "url": url,
            "type": "output",
            "filename": name,
            "is_public": False,
            "subfolder": "",
            "upload_duration": 0.1,
        }
        rows.append(
            {
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run.external_id}/{name}")),
                "output_id": None,
                "run_id": run.external_id,
                "data": {"images": [item]},
                "node_meta": None,
                "created_at": iso(run.finished_at()),
                "updated_at": iso(run.finished_at()),
                "type": None,
                "node_id": "9",
            }
        )
    return rows


def setup(app: web.Application, fake_state: FakeState) -> None:
    app[STATE] = fake_state
    app.router.add_post("/run/deployment/queue", queue_run)
    app.router.add_get("/run/{run_id}", get_run)
    app.router.add_post("/run/{run_id}/cancel", cancel_run)
