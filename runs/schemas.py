"""The run's public JSON shape (DESIGN.md "A run in JSON"), shared by the API and outbound webhooks."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.http import HttpResponse
from ninja import Schema
from ninja.responses import NinjaJSONEncoder
from pydantic import Field

from runs.models import Run, RunEvent, RunOutput


class ProviderRef(Schema):
    id: UUID
    name: str
    kind: str


class ErrorInfo(Schema):
    message: str
    node_id: str | None = None
    node_type: str | None = None
    traceback: str | None = None


class OutputOut(Schema):
    id: UUID
    kind: str = Field(examples=["image"])
    filename: str = Field(examples=["ComfyUI_00001_.png"])
    url: str = Field(description="Download through comfytrack: the archived file, or the provider's link while valid.")
    archived: bool
    width: int | None = None
    height: int | None = None
    size_bytes: int | None = None


class RunOut(Schema):
    id: UUID
    provider: ProviderRef
    external_id: str = Field(description="The provider's id for the run (empty until the provider accepted it).")
    status: str = Field(examples=["running"], description="pending, queued, running, succeeded, failed, …")
    provider_status: str
    progress: float | None = None
    live_status: str
    created: datetime
    queued: datetime | None = None
    started: datetime | None = None
    finished: datetime | None = None
    queue_seconds: float | None = None
    run_seconds: float | None = None
    error: ErrorInfo | None = None
    outputs: list[OutputOut]
    origin: str
    retry_of: UUID | None = None


class RunPage(Schema):
    items: list[RunOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page; null on the last page.")


class EventOut(Schema):
    created: datetime
    source: str = Field(examples=["poll"])
    from_status: str
    to_status: str
    provider_status: str
    detail: str


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def output_url(output: RunOutput) -> str:
    return f"{settings.COMFYTRACK_PUBLIC_URL}/api/v1/outputs/{output.code}/file"


def output_json(output: RunOutput) -> dict[str, Any]:
    return {
        "id": output.code,
        "kind": output.kind,
        "filename": output.filename,
        "url": output_url(output),
        "archived": output.archived is not None,
        "width": output.width,
        "height": output.height,
        "size_bytes": output.size_bytes,
    }


def run_json(run: Run, outputs: list[RunOutput] | None = None) -> dict[str, Any]:
    """The run as JSON-ready values. Expects `provider` (and `retry_of`) selected and `outputs` prefetched."""
    error = run.error or {}
    return {
        "id": run.code,
        "provider": {"id": run.provider.code, "name": run.provider.name, "kind": run.provider.kind},
        "external_id": run.external_id,
        "status": run.status,
        "provider_status": run.provider_status,
        "progress": run.progress,
        "live_status": run.live_status,
        "created": run.created,
        "queued": run.queued,
        "started": run.started,
        "finished": run.finished,
        "queue_seconds": run.queue_seconds,
        "run_seconds": run.run_seconds,
        "error": {
            "message": str(error.get("message") or ""),
            "node_id": _text(error.get("node_id")),
            "node_type": _text(error.get("node_type")),
            "traceback": _text(error.get("traceback")),
        }
        if error
        else None,
        "outputs": [output_json(o) for o in (outputs if outputs is not None else run.outputs.all())],
        "origin": run.origin,
        "retry_of": run.retry_of.code if run.retry_of_id else None,
    }


def event_json(event: RunEvent) -> dict[str, Any]:
    return {
        "created": event.created,
        "source": event.source,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "provider_status": event.provider_status,
        "detail": event.detail,
    }


# Columns a run's JSON never shows; workflows in particular can be hundreds of kB each.
NOT_IN_JSON = ("workflow", "inputs", "search_text", "last_sync_error", "retry_of__workflow", "retry_of__inputs",
               "retry_of__search_text", "retry_of__last_sync_error")  # fmt: skip


def runs_for_api(queryset):
    """The queryset every run response uses: a constant number of queries per page, no heavy columns."""
    return queryset.select_related("provider", "retry_of").prefetch_related("outputs").defer(*NOT_IN_JSON)


def json_response(data: Any, status: int = 200) -> HttpResponse:
    """Hot read paths (run list and detail) build their JSON directly: the values already have the
    documented shape (the OpenAPI schema still describes them, and the schemathesis test checks it),
    so re-validating every run through pydantic would only cost time. Same encoder as ninja's."""
    return HttpResponse(json.dumps(data, cls=NinjaJSONEncoder), status=status, content_type="application/json")
