"""ComfyDeploy (api.comfydeploy.com) client (docs/providers.md).

Runs are submitted against a *deployment* (the graph lives on ComfyDeploy), polled with
`GET /run/{id}`, cancelled with `POST /run/{id}/cancel`, and may push `run.updated` webhooks
(`parse_webhook`).

Failure details: the run document has no structured node error (docs/providers.md), so
`RunError` is derived from what exists: `live_status` is written by the worker as
`"Executing <class_type>"` (CD-node custom_routes.py), which names the node type that was running when
the run failed, and any `text` outputs are appended as the provider's own words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from providers.clients.base import (
    OutputRef,
    ProviderClient,
    ProviderError,
    RunError,
    RunSnapshot,
    RunStatus,
    SecretModel,
    clamp_progress,
    content_type_for,
    guess_kind,
    parse_timestamp,
    usage_seconds,
)

# Presigned S3 GET URLs for non-public outputs live 3600 s (CD-api utils.py get_temporary_download_url).
PRESIGNED_TTL = timedelta(seconds=3600)
MEDIA_KEYS = ("images", "files", "gifs", "mesh")  # CD-api utils.py upload_types

STATUS_MAP: dict[str, RunStatus] = {
    "not-started": RunStatus.QUEUED,
    "queued": RunStatus.QUEUED,
    "started": RunStatus.RUNNING,
    "running": RunStatus.RUNNING,
    "uploading": RunStatus.RUNNING,
    "success": RunStatus.SUCCEEDED,
    "failed": RunStatus.FAILED,
    "timeout": RunStatus.TIMED_OUT,  # our choice, not "failed" (docs/providers.md)
    "cancelled": RunStatus.CANCELLED,
}


class ComfyDeploySecret(SecretModel):
    token: str


class _Model(BaseModel):
    # Tolerant: the live model has more fields than the docs spec, and may grow.
    model_config = ConfigDict(extra="allow")


class MediaItem(_Model):
    url: str
    filename: str
    type: str | None = None
    is_public: bool | None = None
    subfolder: str | None = None


class RunOutputRow(_Model):
    id: str | None = None
    node_id: str | None = None
    data: dict[str, Any] | None = None


class WorkflowRun(_Model):
    """WorkflowRunModel (CD-api types.py); only `status` is required to make sense of it."""

    id: str | None = None
    status: str
    live_status: str | None = None
    progress: float | None = None
    created_at: str | None = None
    queued_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    queue_position: int | None = None
    outputs: list[RunOutputRow] | None = None
    gpu: str | None = None
    # Seconds: the run's GPU time including cold starts (run_duration + cold_start_duration_total).
    duration: float | None = None


class WebhookBody(_Model):
    """`send_webhook` payload (CD-api internal.py): run.updated / run.output."""

    run_id: str
    status: str
    event_type: str | None = None
    live_status: str | None = None
    progress: float | None = None
    outputs: list[RunOutputRow] | None = None


class ComfyDeployClient(ProviderClient):
    kind = "comfydeploy"
    label = "ComfyDeploy"
    Secret = ComfyDeploySecret
    secret: ComfyDeploySecret
    default_base_url = "https://api.comfydeploy.com/api"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret.token}"}

    async def submit(self, workflow: dict[str, Any], inputs: dict[str, Any], options: dict[str, Any]) -> str:
        """Queue a deployment run. `workflow` is not sent: a deployment carries its own graph.

        options: deployment_id (else provider config `deployment_id`), webhook, webhook_intermediate_status, gpu.
        """
        deployment_id = options.get("deployment_id") or self.config.get("deployment_id")
        if not deployment_id:
            raise ProviderError(
                "ComfyDeploy needs a deployment_id (in the provider's config or the submission).", permanent=True
            )
        body: dict[str, Any] = {"deployment_id": str(deployment_id), "inputs": dict(inputs or {})}
        for key in ("webhook", "webhook_intermediate_status", "gpu"):
            if options.get(key) is not None:
                body[key] = options[key]
        response = await self.request("POST", "run/deployment/queue", json=body)
        data = self.json(response)
        run_id = data.get("run_id") if isinstance(data, dict) else None
        if not isinstance(run_id, str) or not run_id:
            raise ProviderError("ComfyDeploy accepted the run but its answer has no run_id.")
        return run_id

    async def fetch(self, external_id: str) -> RunSnapshot:
        response = await self.request("GET", f"run/{external_id}", allow=(404,))
        if response.status_code == 404:
            return RunSnapshot(external_id=external_id, status=RunStatus.UNKNOWN, provider_status="not_found")
        what = f"ComfyDeploy run {external_id}"
        run = self.validate(WorkflowRun, self.json(response), what)
        return run_snapshot(run, external_id, fetched=datetime.now(UTC))

    async def cancel(self, external_id: str) -> None:
        """POST /run/{id}/cancel. Quirk: every error, a 404 included, is re-wrapped as
        500 {"detail": "Error cancel function <msg>"} (docs/providers.md)."""
        response = await self.request("POST", f"run/{external_id}/cancel", allow=(404, 500))
        if response.is_success:
            return
        detail = self.error_detail(response)
        if response.status_code == 404 or "not found" in detail.lower():
            raise ProviderError(
                f"ComfyDeploy cannot cancel run {external_id}: it is unknown or has no worker call yet ({detail}).",
                permanent=True,
                status_code=404,
            )
        raise self.status_error(response, f"ComfyDeploy POST /run/{external_id}/cancel")

    async def check(self) -> str:
        """There is no documented "who am I": probe a run id that cannot exist. 404 means the token was
        accepted (401/403 raise as auth failures)."""
        response = await self.request("GET", "run/00000000-0000-0000-0000-000000000000", allow=(404,))
        return f"ComfyDeploy accepted the token (probe answered {response.status_code})."


# ---------------------------------------------------------------------------------------------
# Parsing (module level so the webhook receiver can use it without a client)
# ---------------------------------------------------------------------------------------------


def map_status(raw: str, *, started: bool) -> RunStatus:
    """Unknown strings are in flight, never a crash: running once it has started, else queued."""
    status = STATUS_MAP.get(raw.strip().lower())
    if status is not None:
        return status
    return RunStatus.RUNNING if started else RunStatus.QUEUED


def run_snapshot(run: WorkflowRun, external_id: str, fetched: datetime) -> RunSnapshot:
    started = parse_timestamp(run.started_at)
    status = map_status(run.status, started=started is not None)
    outputs = tuple(outputs_of(run.outputs or [], fetched))
    return RunSnapshot(
        external_id=run.id or external_id,
        status=status,
        provider_status=run.status,
        progress=clamp_progress(run.progress),  # 0..1 in the source; the docs' 0..100 is wrong
        live_status=run.live_status,
        created=parse_timestamp(run.created_at),
        queued=parse_timestamp(run.queued_at),
        started=started,
        finished=parse_timestamp(run.ended_at),
        error=error_of(status, run.live_status, run.outputs or []),
        outputs=outputs,
        queue_position=run.queue_position if status == RunStatus.QUEUED else None,
        gpu=(run.gpu or "").strip()[:40] or None,
        gpu_seconds=usage_seconds(run.duration) if status.is_terminal else None,
    )


def error_of(status: RunStatus, live_status: str | None, rows: Iterable[RunOutputRow]) -> RunError | None:
    if status == RunStatus.TIMED_OUT:
        return RunError(message="ComfyDeploy timed the run out (no progress for 24 hours).")
    if status != RunStatus.FAILED:
        return None
    node_type = None
    if live_status and live_status.startswith("Executing "):
        node_type = live_status.removeprefix("Executing ").strip() or None
    message = "ComfyDeploy reported the run failed"
    message += f" while executing {node_type}." if node_type else "."
    texts = [t for row in rows for t in (row.data or {}).get("text", []) if isinstance(t, str) and t.strip()]
    if texts:
        message += " " + texts[-1].strip()[:500]
    return RunError(message=message, node_type=node_type)


def outputs_of(rows: Iterable[RunOutputRow], fetched: datetime) -> list[OutputRef]:
    """Media items from every output row. Items we can't read are skipped, not fatal: the status
    update matters more than one odd output."""
    refs: list[OutputRef] = []
    for index, row in enumerate(rows):
        for key, items in (row.data or {}).items():
            if key not in MEDIA_KEYS or not isinstance(items, list):
                continue
            for item in items:
                try:
                    media = MediaItem.model_validate(item)
                except ValidationError:
                    continue
                refs.append(_output_ref(row, index, key, media, fetched))
    return refs


def _output_ref(row: RunOutputRow, index: int, key: str, media: MediaItem, fetched: datetime) -> OutputRef:
    # The presigned URL changes on every GET, so the key is the output row plus the filename.
    row_key = row.id or f"{row.node_id or index}"
    return OutputRef(
        key=f"{row_key}/{media.subfolder or ''}/{media.filename}",
        filename=media.filename,
        kind=guess_kind(media.filename, key),
        url=media.url,
        node_id=row.node_id,
        content_type=content_type_for(media.filename),
        url_expires=url_expiry(media.url, media.is_public, fetched),
    )


# SigV4 query parameters (case-insensitive names): when the link was signed and for how many seconds.
_AMZ_DATE = re.compile(r"[?&]x-amz-date=(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z(?:&|$)", re.IGNORECASE)
_AMZ_EXPIRES = re.compile(r"[?&]x-amz-expires=(\d{1,9})(?:&|$)", re.IGNORECASE)


def url_expiry(url: str, is_public: bool | None, fetched: datetime) -> datetime | None:
    """X-Amz-Date + X-Amz-Expires when the URL is presigned (SigV4); else fetch time + 3600 s unless the
    item is known public. `is_public: null` is treated as possibly presigned: archiving early is harmless.
    (Regular expressions, not parse_qs + strptime: this runs for every output on every poll.)"""
    signed_at, expires = _AMZ_DATE.search(url), _AMZ_EXPIRES.search(url)
    if signed_at and expires:
        try:
            year, month, day, hour, minute, second = (int(part) for part in signed_at.groups())
            start = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:  # e.g. month 13
            start = None
        if start is not None:
            return start + timedelta(seconds=int(expires.group(1)))
    if is_public:
        return None
    return fetched + PRESIGNED_TTL


def parse_webhook(payload: Any) -> RunSnapshot:
    """The inbound webhook body (docs/providers.md) -> RunSnapshot.

    It carries no timestamps; `run.output` events carry only the new output, so the sync engine must
    add outputs rather than replace them. A body we can't read is a ProviderError (the receiver answers 4xx).
    """
    try:
        body = WebhookBody.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        message = f"ComfyDeploy webhook: unexpected body ({where}: {first['msg']})."
        raise ProviderError(message, permanent=True) from None
    fetched = datetime.now(UTC)
    # Webhooks come from worker updates, so an unknown status is taken as running.
    status = map_status(body.status, started=True)
    return RunSnapshot(
        external_id=body.run_id,
        status=status,
        provider_status=body.status,
        progress=clamp_progress(body.progress),
        live_status=body.live_status,
        error=error_of(status, body.live_status, body.outputs or []),
        outputs=tuple(outputs_of(body.outputs or [], fetched)),
    )
