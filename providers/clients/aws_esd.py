"""AWS "Extension for Stable Diffusion" (ESD), ComfyUI API: `/executes` behind API Gateway (docs/providers.md).

Every Lambda answer is wrapped in `{statusCode, debug, data, message}`; API Gateway's own errors are
`{message, requestId}`. ESD has no running state (`created` covers queued and running), no cancel and
no useful list call (GET /executes is an unordered DynamoDB scan), so fetch_many is the default
bounded-concurrency fetch.
"""

from __future__ import annotations

import ast
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from providers.clients.base import (
    OutputRef,
    ProviderClient,
    ProviderError,
    RemoteModel,
    RunError,
    RunSnapshot,
    RunStatus,
    SecretModel,
    Unsupported,
    content_type_for,
    error_excerpt,
    graph_or_none,
    guess_kind,
    parse_timestamp,
    url_path,
)
from providers.clients.comfyui import apply_inputs, check_api_workflow
from providers.clients.presigned import filename_from_url, presigned_expiry
from providers.clients.transport import ProviderResponse

# get_execute.py presigns output_files/temp_files with generate_presigned_url_for_keys(expiration=3600).
PRESIGNED_TTL = 3600
# A prompt text longer than this is not read (the fingerprint needs the graph's shape, not megabytes of it).
MAX_PROMPT_CHARS = 1_000_000


class AwsEsdSecret(SecretModel):
    api_key: str = Field(min_length=1)
    # Docs want a `username` header on user-scoped APIs (builtin user `api`); the comfy Lambdas at
    # 969a192 don't check it, but later releases may.
    username: str = Field(default="api", min_length=1)


class Envelope(RemoteModel):
    statusCode: int | None = None  # the provider's field name
    data: Any = None
    message: str | None = None


class Execute(RemoteModel):
    """One ComfyExecuteTable item (only the fields we read; the Lambda returns the whole row)."""

    prompt_id: str | None = None
    status: str
    create_time: str | None = None
    start_time: str | None = None
    complete_time: str | None = None
    message: str | None = None
    output_files: list[str] | None = None
    temp_files: list[str] | None = None
    # {prompt: str(<graph dict>), number, front, extra_data, client_id}: the graph as Python writes a dict.
    prompt_params: Any = None


_STATUSES = {
    "created": RunStatus.QUEUED,
    "success": RunStatus.SUCCEEDED,
    "failed": RunStatus.FAILED,
    "fail": RunStatus.FAILED,  # the container's spelling, normally rewritten to `failed` (execute_async_events.py)
}


class AwsEsdClient(ProviderClient):
    kind = "aws_esd"
    label = "AWS Extension for Stable Diffusion"
    Secret = AwsEsdSecret
    secret: AwsEsdSecret
    default_base_url = None  # one API Gateway per deployment: https://{api-id}.execute-api.{region}.amazonaws.com/prod
    supports_cancel = False
    inputs_override_nodes = True

    def auth_headers(self) -> dict[str, str]:
        secret: AwsEsdSecret = self.secret
        return {"x-api-key": secret.api_key, "username": secret.username}

    async def submit(self, workflow: dict[str, Any], inputs: dict[str, Any], options: dict[str, Any]) -> str:
        """POST /executes with a prompt_id we generate (the API requires the client to choose it)."""
        endpoint = options.get("endpoint_name") or self.config.get("endpoint_name")
        if not endpoint:
            raise ProviderError(
                f"{self.label} needs an endpoint_name (the SageMaker endpoint to run on): set it in the "
                "provider's config or in the submit options.",
                permanent=True,
            )
        prompt_id = str(options.get("prompt_id") or uuid.uuid4())
        body: dict[str, Any] = {
            "prompt_id": prompt_id,
            "prompt": apply_inputs(check_api_workflow(workflow, self.label), inputs, self.label),
            "need_sync": False,
            "endpoint_name": str(endpoint),
        }
        for key in ("workflow_name", "client_id", "extra_data", "need_prepare", "multi_async"):
            if key in options:
                body[key] = options[key]
        # 201 on async endpoints, 200 (with the finished result) on real-time ones.
        response = await self.request("POST", "/executes", json=body)
        data = self._envelope(response).data
        if isinstance(data, dict) and isinstance(data.get("prompt_id"), str) and data["prompt_id"]:
            return data["prompt_id"]
        return prompt_id

    async def fetch(self, external_id: str) -> RunSnapshot:
        response = await self.request("GET", f"/executes/{external_id}", allow=(404,))
        envelope = self._envelope(response)
        if response.status_code == 404:
            # common/response.py not_found(): {statusCode: 404, data: "execute not found for prompt_id: …"}
            if envelope.statusCode == 404 or isinstance(envelope.data, str):
                return RunSnapshot(external_id=external_id, status=RunStatus.UNKNOWN, provider_status="not_found")
            raise self.status_error(response, f"{self.label} GET /executes")
        execute = self.validate(Execute, envelope.data, f"{self.label} GET /executes/{{id}}")
        return self.snapshot(external_id, execute, fetched=datetime.now(UTC))

    def snapshot(self, external_id: str, execute: Execute, fetched: datetime) -> RunSnapshot:
        raw = execute.status
        started = parse_timestamp(execute.start_time)  # naive ISO, written by a Lambda in UTC
        status = _STATUSES.get(raw.lower(), RunStatus.RUNNING)  # unknown strings: in flight
        if status is RunStatus.QUEUED and started is not None:
            # Only real-time endpoints set start_time at submit: such a run is being worked on.
            status = RunStatus.RUNNING
        error = None
        if status is RunStatus.FAILED:
            error = RunError(execute.message or f"{self.label} reported the run failed without a message.")
        created = parse_timestamp(execute.create_time)
        return RunSnapshot(
            external_id=external_id,
            status=status,
            provider_status=raw,
            created=created,
            queued=created,  # ESD queues on submit; there is no separate queued time
            started=started,
            finished=parse_timestamp(execute.complete_time),
            error=error,
            outputs=self.outputs(execute, fetched) if status is RunStatus.SUCCEEDED else (),
            progress=1.0 if status is RunStatus.SUCCEEDED else None,
            # Read once, from the answer that finishes the run: reading the text costs more than the rest.
            workflow=prompt_graph(execute.prompt_params) if status.is_terminal else None,
        )

    def outputs(self, execute: Execute, fetched: datetime) -> tuple[OutputRef, ...]:
        refs: dict[str, OutputRef] = {}
        for group, urls in (("output", execute.output_files), ("temp", execute.temp_files)):
            for url in urls or []:
                # The table stores object keys; GET swaps in presigned URLs. Anything else can't be fetched.
                if not isinstance(url, str) or not url.startswith(("https://", "http://")):
                    continue
                filename = filename_from_url(url)
                key = f"{group}/{_object_path(url, execute.prompt_id) or filename}"
                refs.setdefault(
                    key,
                    OutputRef(
                        key=key,
                        filename=filename,
                        kind=guess_kind(filename),
                        url=url,
                        content_type=content_type_for(filename),
                        url_expires=presigned_expiry(url, fetched, PRESIGNED_TTL),
                    ),
                )
        return tuple(refs.values())

    async def cancel(self, external_id: str) -> None:
        # DELETE /executes only removes the DynamoDB rows; the SageMaker job runs on (delete_executes.py).
        raise Unsupported(f"{self.label} has no API to cancel a run (deleting it would only hide it).")

    async def check(self) -> str:
        response = await self.request("GET", "/executes", params={"limit": 1})
        self._envelope(response)
        return f"{self.label} accepted the API key."

    def _envelope(self, response: ProviderResponse) -> Envelope:
        return self.validate(Envelope, self.json(response), f"{self.label} {response.path}")

    def error_detail(self, response: ProviderResponse) -> str:
        """Lambda errors put text in `message` (or `data` for not_found); API Gateway uses `message` too."""
        detail = super().error_detail(response)
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            return detail
        if isinstance(body, dict) and isinstance(body.get("data"), str) and body["data"]:
            data = error_excerpt(body["data"])
            return f"{detail}: {data}" if detail else data
        return detail


def prompt_graph(prompt_params: Any) -> dict[str, Any] | None:
    """The graph in `prompt_params.prompt`, which the Lambda stores as `str(dict)`, not JSON
    (`{'1': {'class_type': 'EmptyImage', …}}`). Read with `ast.literal_eval`: literals only, nothing is
    run. Text that is not one dict of literals (or too long, or too deeply nested) gives None."""
    text = prompt_params.get("prompt") if isinstance(prompt_params, dict) else None
    if isinstance(text, dict):  # a release that stores JSON
        return graph_or_none(text)
    if not isinstance(text, str) or len(text) > MAX_PROMPT_CHARS:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return graph_or_none(value)


def _object_path(url: str, prompt_id: str | None) -> str | None:
    """The object key after `/comfy/{output|temp}/{prompt_id}/`: stable across polls, unlike the signed URL."""
    path = url_path(url)
    marker = f"/{prompt_id}/" if prompt_id else None
    if marker and marker in path:
        return path.split(marker, 1)[1] or None
    return None
