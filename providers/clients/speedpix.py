"""Alibaba Cloud SpeedPix (智作工坊) ComfyUI API: `/scc/comfy_*` behind Alibaba API Gateway (docs/providers.md).

Every call is a POST signed with the gateway's HMAC-SHA256 digest scheme (AppKey/AppSecret). Answers
are an envelope `{status: 10|20, errCode, errMessage, subErrCode, subErrMessage, data}`: 10 is success,
20 failure. There is no cancel, no list call and no webhook.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from providers.clients.base import (
    ClientOptions,
    OutputRef,
    ProviderClient,
    ProviderError,
    RemoteModel,
    RunError,
    RunSnapshot,
    RunStatus,
    SecretModel,
    Unsupported,
    clamp_progress,
    content_type_for,
    guess_kind,
    parse_timestamp,
    url_path,
    usage_seconds,
)
from providers.clients.presigned import filename_from_url, presigned_expiry
from providers.clients.transport import ProviderResponse

JSON_TYPE = "application/json; charset=utf-8"
SIGNATURE_HEADERS = "x-ca-timestamp,x-ca-key,x-ca-nonce,x-ca-signature-method"
GATEWAY_OK = 10

_STATUSES = {
    "waiting": RunStatus.QUEUED,
    "running": RunStatus.RUNNING,
    "succeeded": RunStatus.SUCCEEDED,
    "failed": RunStatus.FAILED,
    # Only the SDKs name a cancelled value, spelled differently (SP-py `canceled`, SP-java `cancelled`).
    "canceled": RunStatus.CANCELLED,
    "cancelled": RunStatus.CANCELLED,
}
# No error-code catalogue exists (UNCONFIRMED): words that suggest "try again later".
_TRANSIENT = re.compile(r"throttl|limit|busy|timeout|timed out|unavailable|internal|try again|系统繁忙|超时", re.I)
_NOT_FOUND = re.compile(r"not.?found|not.?exist|no such|不存在", re.I)
_AUTH = re.compile(r"signature|appkey|app key|unauthori[sz]ed|forbidden", re.I)


class SpeedPixSecret(SecretModel):
    app_key: str = Field(min_length=1)
    app_secret: str = Field(min_length=1)


class Envelope(RemoteModel):
    status: int | None = None
    errCode: str | None = None  # camelCase: the gateway's field names
    errMessage: str | None = None
    subErrCode: str | None = None
    subErrMessage: str | None = None
    data: Any = None


class Progress(RemoteModel):
    status: str
    progress: float | None = None
    message: str | None = None


class Result(RemoteModel):
    status: str
    taskBeginTime: int | float | str | None = None
    taskEndTime: int | float | str | None = None
    # The execution duration in milliseconds (docs 2844527): the usage SpeedPix reports for a task.
    taskDuration: Any = None
    images: list[Any] | None = None
    result: dict[str, Any] | None = None


def gateway_body(body: Mapping[str, Any]) -> bytes:
    """The exact bytes we send and MD5: the SDK's serialisation (SP-py client.py)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class SpeedPixClient(ProviderClient):
    kind = "speedpix"
    label = "Alibaba Cloud SpeedPix"
    Secret = SpeedPixSecret
    secret: SpeedPixSecret
    default_base_url = "https://openai.edu-aliyun.com"
    supports_cancel = False

    def __init__(
        self,
        base_url: str | None,
        secret: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        options: ClientOptions | None = None,
        clock: Callable[[], datetime] | None = None,
        nonce: Callable[[], str] | None = None,
    ) -> None:
        super().__init__(base_url, secret, config, options=options)
        # Injectable so tests can check a signature computed independently for a fixed time and nonce.
        self.clock = clock or (lambda: datetime.now(UTC))
        self.nonce = nonce or (lambda: str(uuid.uuid4()))

    # -- signing -------------------------------------------------------------------------------

    def signed_headers(self, path: str, body: bytes) -> dict[str, str]:
        """Alibaba API Gateway digest auth as both SDKs do it (the Python SDK's `_generate_header`)."""
        secret: SpeedPixSecret = self.secret
        now = self.clock()
        headers = {
            # RFC 1123 with `GMT` spelled `GMT+00:00`, as the SDKs send it.
            "date": email.utils.format_datetime(now.astimezone(UTC), usegmt=True).replace("GMT", "GMT+00:00"),
            "x-ca-key": secret.app_key,
            "x-ca-timestamp": str(int(now.timestamp() * 1000)),
            "x-ca-nonce": self.nonce(),
            "x-ca-signature-method": "HmacSHA256",
            "x-ca-signature-headers": SIGNATURE_HEADERS,
            "Content-Type": JSON_TYPE,
            "Accept": JSON_TYPE,
        }
        if body:
            headers["content-md5"] = base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324 — the protocol's choice
        string_to_sign = "\n".join(
            [
                "POST",
                JSON_TYPE,
                headers.get("content-md5", ""),
                JSON_TYPE,
                headers["date"],
                f"x-ca-key:{headers['x-ca-key']}",
                f"x-ca-nonce:{headers['x-ca-nonce']}",
                "x-ca-signature-method:HmacSHA256",
                f"x-ca-timestamp:{headers['x-ca-timestamp']}",
                path,
            ]
        )
        digest = hmac.new(secret.app_secret.encode(), string_to_sign.encode(), hashlib.sha256).digest()
        headers["x-ca-signature"] = base64.b64encode(digest).decode()
        return headers

    async def post(
        self, path: str, body: Mapping[str, Any], extra_headers: Mapping[str, str] | None = None
    ) -> Envelope:
        """One signed POST; the path signed is the one the gateway sees (base URL path included)."""
        content = gateway_body(body)
        headers = {**self.signed_headers(url_path(self.url(path)), content), **(extra_headers or {})}
        response = await self.request("POST", path, content=content, headers=headers)
        return self.validate(Envelope, self.json(response), f"{self.label} POST {path}")

    # -- the contract --------------------------------------------------------------------------

    async def submit(self, workflow: dict[str, Any], inputs: dict[str, Any], options: dict[str, Any]) -> str:
        """POST /scc/comfy_prompt: the workflow is published on SpeedPix and named by workflow_id; the
        graph itself is not sent (the API takes only the inputs mapped when publishing)."""
        body = self.prompt_body(inputs, options)
        resource = options.get("resource_config_id") or self.config.get("resource_config_id") or "default"
        envelope = await self.post("/scc/comfy_prompt", body, {"X-SP-RESOURCE-CONFIG-ID": str(resource)})
        self.raise_for_envelope(envelope, "/scc/comfy_prompt")
        task_id = envelope.data.get("taskId") if isinstance(envelope.data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise ProviderError(f"{self.label} accepted the task but sent no taskId.")
        return task_id

    def prompt_body(self, inputs: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
        workflow_id = options.get("workflow_id") or self.config.get("workflow_id")
        if not workflow_id:
            raise ProviderError(
                f"{self.label} needs a workflow_id (the published workflow): set it in the provider's "
                "config or in the submit options.",
                permanent=True,
            )
        body: dict[str, Any] = {"workflow_id": str(workflow_id)}
        version_id = options.get("version_id") or self.config.get("version_id")
        if version_id:
            body["version_id"] = str(version_id)
        else:  # the SDKs' default
            body["alias_id"] = str(options.get("alias_id") or self.config.get("alias_id") or "main")
        body["inputs"] = dict(inputs or {})
        for key in ("randomise_seeds", "return_temp_files"):
            if key in options:
                body[key] = bool(options[key])
        return body

    async def fetch(self, external_id: str) -> RunSnapshot:
        """comfy_get_progress while in flight; comfy_get_result once it says succeeded/failed (as the SDKs do)."""
        envelope = await self.post("/scc/comfy_get_progress", {"taskId": external_id})
        if envelope.status != GATEWAY_OK:
            if _NOT_FOUND.search(_codes(envelope)):
                return RunSnapshot(external_id=external_id, status=RunStatus.UNKNOWN, provider_status="not_found")
            self.raise_for_envelope(envelope, "/scc/comfy_get_progress")
        progress = self.validate(Progress, envelope.data, f"{self.label} comfy_get_progress")
        status = _STATUSES.get(progress.status.lower(), RunStatus.RUNNING)  # unknown strings: in flight
        if status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            return await self.fetch_result(external_id)
        return RunSnapshot(
            external_id=external_id,
            status=status,
            provider_status=progress.status,
            progress=_progress(progress.progress) if status is RunStatus.RUNNING else None,
            live_status=progress.message or None,
        )

    async def fetch_result(self, external_id: str) -> RunSnapshot:
        envelope = await self.post("/scc/comfy_get_result", {"taskId": external_id})
        if envelope.status != GATEWAY_OK:
            text = _codes(envelope)
            if _TRANSIENT.search(text):
                raise ProviderError(f"{self.label} comfy_get_result failed for now: {text}.")
            # The SDKs treat status != 10 from get_result as a failed task.
            error = RunError(f"{self.label} reported the task failed: {text}.", exception_type=envelope.subErrCode)
            return RunSnapshot(external_id=external_id, status=RunStatus.FAILED, provider_status="failed", error=error)
        result = self.validate(Result, envelope.data, f"{self.label} comfy_get_result")
        status = _STATUSES.get(result.status.lower(), RunStatus.RUNNING)
        failed = RunError(f"{self.label} reported the task failed.") if status is RunStatus.FAILED else None
        return RunSnapshot(
            external_id=external_id,
            status=status,
            provider_status=result.status,
            progress=1.0 if status is RunStatus.SUCCEEDED else None,
            started=parse_timestamp(result.taskBeginTime),
            finished=parse_timestamp(result.taskEndTime),
            error=failed,
            outputs=self.outputs(result) if status is RunStatus.SUCCEEDED else (),
            gpu_seconds=usage_seconds(result.taskDuration, 1000) if status.is_terminal else None,
        )

    def outputs(self, result: Result) -> tuple[OutputRef, ...]:
        """Custom `result` fields first (they carry type, filename and size), then default `images` URLs
        that aren't already among them (the docs example lists the same file in both)."""
        refs: dict[str, OutputRef] = {}
        seen_paths: set[str] = set()
        for name, value in (result.result or {}).items():
            items = value if isinstance(value, list) else [value]
            for index, item in enumerate(items):
                key = f"result/{name}" if len(items) == 1 else f"result/{name}/{index}"
                ref = _field_output(key, item)
                if ref is not None and url_path(ref.url) not in seen_paths:
                    refs[key] = ref
                    seen_paths.add(url_path(ref.url))
        for url in result.images or []:
            if isinstance(url, str) and url.startswith(("https://", "http://")):
                if url_path(url) in seen_paths:
                    continue
                seen_paths.add(url_path(url))
                filename = filename_from_url(url)
                refs.setdefault(
                    f"images/{filename}",
                    OutputRef(
                        key=f"images/{filename}",
                        filename=filename,
                        kind=guess_kind(filename, "images"),
                        url=url,
                        content_type=content_type_for(filename),
                        url_expires=presigned_expiry(url),  # lifetime undocumented: only what the URL says
                    ),
                )
        return tuple(refs.values())

    async def cancel(self, external_id: str) -> None:
        # SP-py Predictions.cancel is a local stub: "暂不支持取消" (cancel not supported yet).
        raise Unsupported(f"{self.label} has no API to cancel a task.")

    async def check(self) -> str:
        """A signed comfy_get_progress for a task id that cannot exist: the gateway checks the signature
        before the service looks for the task, so a bad key fails with a gateway signature error (an
        auth_failed ProviderError from request()), while any envelope answer, "task not found" included,
        proves the AppKey/AppSecret pair works. It starts nothing and costs nothing."""
        envelope = await self.post("/scc/comfy_get_progress", {"taskId": "comfytrack-credential-check"})
        if envelope.status != GATEWAY_OK and _AUTH.search(_codes(envelope)):
            raise ProviderError(
                f"{self.label} refused the credential: {_codes(envelope)}.", permanent=True, auth_failed=True
            )
        return f"{self.label} accepted the AppKey signature."

    # -- errors --------------------------------------------------------------------------------

    def raise_for_envelope(self, envelope: Envelope, path: str) -> None:
        if envelope.status == GATEWAY_OK:
            return
        text = _codes(envelope)
        raise ProviderError(
            f"{self.label} POST {path} failed: {text}.",
            permanent=not _TRANSIENT.search(text),
            auth_failed=bool(_AUTH.search(text)) and not _TRANSIENT.search(text),
        )

    def status_error(self, response: ProviderResponse, what: str) -> ProviderError:
        """Gateway-made errors carry X-Ca-Error-Code/-Message headers (e.g. A403IS "Invalid Signature").
        Their HTTP status is UNCONFIRMED for SpeedPix, so any of them naming the key or signature is auth."""
        code, message = response.headers.get("x-ca-error-code"), response.headers.get("x-ca-error-message")
        if not (code or message):
            return super().status_error(response, what)
        # The echoed StringToSign holds our AppKey and nonce: keep it out of messages.
        message = (message or "").split("Server StringToSign", 1)[0].strip(" ,") or "no message"
        text = f"{what} was refused by the API gateway ({response.status_code} {code or ''}): {message}"
        if _AUTH.search(message) or response.status_code in (401, 403):
            return ProviderError(
                f"{text}. Check the AppKey and AppSecret.",
                permanent=True,
                auth_failed=True,
                status_code=response.status_code,
            )
        return (
            super().status_error(response, what)
            if response.status_code >= 429
            else ProviderError(text, permanent=True, status_code=response.status_code)
        )


def _codes(envelope: Envelope) -> str:
    parts = []
    if envelope.errCode or envelope.errMessage:
        parts.append(f"{envelope.errCode or '?'} {envelope.errMessage or ''}".strip())
    if envelope.subErrCode or envelope.subErrMessage:
        parts.append(f"{envelope.subErrCode or '?'} {envelope.subErrMessage or ''}".strip())
    return "; ".join(parts) or f"gateway status {envelope.status} without an error code"


def _progress(value: float | None) -> float | None:
    # The scale is UNCONFIRMED (0-1 or 0-100): a value above 1 can only be a percentage.
    if value is None:
        return None
    return clamp_progress(value, 100.0 if value > 1 else 1.0)


def _field_output(key: str, item: Any) -> OutputRef | None:
    """A custom output field: `{url, type, filename?, width?, height?, ...}`; plain values are not files."""
    if not isinstance(item, dict) or not isinstance(item.get("url"), str):
        return None
    url = item["url"]
    filename = item["filename"] if isinstance(item.get("filename"), str) else filename_from_url(url)
    return OutputRef(
        key=key,
        filename=filename,
        kind=guess_kind(filename, item.get("type") if isinstance(item.get("type"), str) else None),
        url=url,
        content_type=content_type_for(filename),
        url_expires=presigned_expiry(url),
        width=item["width"] if isinstance(item.get("width"), int) else None,
        height=item["height"] if isinstance(item.get("height"), int) else None,
    )
