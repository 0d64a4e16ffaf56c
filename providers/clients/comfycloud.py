"""Comfy Cloud (cloud.comfy.org) client (docs/providers.md).

Two APIs behind one kind, chosen by the provider's config:
- `{"api": "v1"}` (default): the ComfyUI-compatible "Cloud API", `X-API-Key`, `POST /api/prompt`,
  `GET /api/jobs/{id}`, one list call `GET /api/jobs?status=pending,in_progress` for a sweep,
  outputs behind `/api/view` (302 to a signed URL).
- `{"api": "v2"}`: Comfy API v2, `Authorization: Bearer`, `/api/v2/jobs`, outputs with signed URLs
  and their expiry. v2 has no list endpoint, so its fetch_many is bounded concurrent fetches.

v1 cancel: only pending jobs can be cancelled one by one (`POST /api/queue {"delete": [id]}`); for a
running job v1 has just `POST /api/interrupt`, which stops *all* the user's running jobs. We refuse
that unless the provider config says `{"allow_global_interrupt": true}`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal
from urllib.parse import urljoin

from pydantic import BaseModel, ConfigDict, ValidationError

from providers.clients import jobs_list
from providers.clients.base import (
    FieldProblem,
    OutputKind,
    OutputRef,
    ProviderClient,
    ProviderError,
    RunError,
    RunSnapshot,
    RunStatus,
    SecretModel,
    SubmissionRejected,
    Unsupported,
    clamp_progress,
    content_type_for,
    graph_or_none,
    guess_kind,
    parse_timestamp,
    usage_seconds,
    view_query,
)
from providers.clients.comfyui import prompt_error_problems
from providers.clients.transport import ProviderResponse

# Answers to a submission that mean "this workflow is invalid" (validation, with node errors).
_REJECTED = (400, 422)
# v1: `/api/jobs` enum, plus the raw strings of `/api/job/{id}/status` (docs snippet 2026-08: only
# success/error/non_retryable_error/lost/cancelled are final; every other string is in flight).
V1_STATUS: dict[str, RunStatus] = {
    "pending": RunStatus.QUEUED,
    "waiting_to_dispatch": RunStatus.QUEUED,
    "submitted": RunStatus.QUEUED,
    "queued_waiting": RunStatus.QUEUED,
    "preparing": RunStatus.QUEUED,
    "in_progress": RunStatus.RUNNING,
    "executing": RunStatus.RUNNING,
    "cancel_requested": RunStatus.RUNNING,
    "completed": RunStatus.SUCCEEDED,
    "success": RunStatus.SUCCEEDED,
    "failed": RunStatus.FAILED,
    "error": RunStatus.FAILED,
    "non_retryable_error": RunStatus.FAILED,
    "lost": RunStatus.LOST,  # our choice (docs/providers.md, "Statuses")
    "cancelled": RunStatus.CANCELLED,
}
V2_STATUS: dict[str, RunStatus] = {
    "queued": RunStatus.QUEUED,
    "running": RunStatus.RUNNING,
    "canceling": RunStatus.RUNNING,  # cancel requested, takes effect at a node boundary
    "succeeded": RunStatus.SUCCEEDED,
    "failed": RunStatus.FAILED,
    "canceled": RunStatus.CANCELLED,  # v2 spells it with one "l"
    "cancelled": RunStatus.CANCELLED,
    "expired": RunStatus.TIMED_OUT,  # our choice (docs/providers.md, "Statuses")
}
V2_KINDS = {"image": OutputKind.IMAGE, "video": OutputKind.VIDEO, "audio": OutputKind.AUDIO, "text": OutputKind.TEXT}
END_EVENTS = ("execution_success", "execution_error", "execution_interrupted")


class ComfyCloudSecret(SecretModel):
    api_key: str


class ComfyCloudConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    api: Literal["v1", "v2"] = "v1"
    allow_global_interrupt: bool = False


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class ExecutionError(_Model):
    node_id: str | None = None
    node_type: str | None = None
    exception_message: str | None = None
    exception_type: str | None = None
    traceback: list[str] | str | None = None


class JobDetail(_Model):
    """v1 JobDetailResponse, and the lighter JobEntry of the list call (same names, fewer fields)."""

    id: str
    status: str
    create_time: float | str | None = None
    update_time: float | str | None = None
    execution_start_time: float | str | None = None
    execution_end_time: float | str | None = None
    execution_error: ExecutionError | None = None
    execution_status: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    # Detail only: `{prompt: <API-format graph>, extra_data}`, as ComfyUI's jobs API has it.
    workflow: dict[str, Any] | None = None


class V2Error(_Model):
    code: str | None = None
    message: str | None = None
    node_id: str | None = None
    class_type: str | None = None
    traceback: str | list[str] | None = None


class V2Output(_Model):
    url: str
    name: str | None = None
    id: str | None = None
    node_id: str | None = None
    type: str | None = None
    content_type: str | None = None
    size_bytes: int | None = None
    url_expires_at: str | None = None


class V2JobWorkflow(_Model):
    """GET /api/v2/jobs/{id}/workflow: `format` "api" is the executed graph, "save" the editor's document."""

    workflow: dict[str, Any]
    format: str


class V2Progress(_Model):
    value: float | None = None
    message: str | None = None
    current_node_class: str | None = None


class V2Metrics(_Model):
    queue_ms: float | None = None
    execution_ms: float | None = None


class V2Job(_Model):
    id: str
    status: str
    metrics: V2Metrics | None = None
    created_at: str | float | None = None
    started_at: str | float | None = None
    completed_at: str | float | None = None
    queue_position: int | None = None
    progress: V2Progress | None = None
    outputs: list[dict[str, Any]] | None = None
    error: V2Error | None = None


class ComfyCloudClient(ProviderClient):
    kind = "comfycloud"
    label = "Comfy Cloud"
    Secret = ComfyCloudSecret
    secret: ComfyCloudSecret
    default_base_url = "https://cloud.comfy.org"
    has_list_call = True  # v1 only; v2 instances set it False (see configure)
    inputs_override_nodes = True

    def configure(self) -> None:
        try:
            self.conf = ComfyCloudConfig.model_validate(self.config)
        except ValidationError:
            raise ProviderError('Comfy Cloud config: "api" must be "v1" or "v2".', permanent=True) from None
        self.v2 = self.conf.api == "v2"
        self._finished = jobs_list.FinishedJobs(self)  # see fetch_many
        if self.v2:
            self.has_list_call = False  # no list endpoint in v2 (openapi-v2.yaml)

    def auth_headers(self) -> dict[str, str]:
        if self.v2:
            return {"Authorization": f"Bearer {self.secret.api_key}"}
        return {"X-API-Key": self.secret.api_key}

    # -- submit ------------------------------------------------------------------------------------

    async def submit(self, workflow: dict[str, Any], inputs: dict[str, Any], options: dict[str, Any]) -> str:
        """inputs are overrides keyed "node_id.input_name" (a ComfyUI graph has no separate inputs).
        options: extra_data (dict), api_key_comfy_org (partner nodes), idempotency_key (v2)."""
        graph = apply_inputs(workflow, inputs)
        extra_data = dict(options.get("extra_data") or {})
        if options.get("api_key_comfy_org"):
            extra_data["api_key_comfy_org"] = options["api_key_comfy_org"]
        if self.v2:
            return await self._submit_v2(graph, extra_data, options.get("idempotency_key"))
        body: dict[str, Any] = {"prompt": graph}
        if extra_data:
            body["extra_data"] = extra_data
        response = await self.request("POST", "api/prompt", json=body, allow=_REJECTED)
        self.raise_if_rejected(response, "Comfy Cloud POST /api/prompt")
        data = self.json(response)
        prompt_id = data.get("prompt_id") if isinstance(data, dict) else None
        if not isinstance(prompt_id, str) or not prompt_id:
            raise ProviderError("Comfy Cloud accepted the prompt but its answer has no prompt_id.")
        return prompt_id

    async def _submit_v2(self, graph: dict[str, Any], extra_data: dict[str, Any], key: str | None) -> str:
        body: dict[str, Any] = {"workflow": graph}
        if extra_data:
            body["extra_data"] = extra_data
        headers = {"Idempotency-Key": str(key)} if key else {}
        response = await self.request("POST", "api/v2/jobs", json=body, headers=headers, allow=_REJECTED)
        self.raise_if_rejected(response, "Comfy Cloud POST /api/v2/jobs")
        job = self.validate(V2Job, self.json(response), "Comfy Cloud POST /api/v2/jobs")
        return job.id

    def raise_if_rejected(self, response: ProviderResponse, what: str) -> None:
        """A 400/422 to a submission: the workflow was refused at validation, with its node errors."""
        if response.status_code not in _REJECTED:
            return
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        problems: tuple[FieldProblem, ...] = ()
        if isinstance(body, dict):
            error = body.get("error")
            details = error.get("details") if isinstance(error, dict) else None
            node_errors = body.get("node_errors") or (details.get("node_errors") if isinstance(details, dict) else None)
            if node_errors:
                problems = prompt_error_problems({"node_errors": node_errors})
        message = self.status_error(response, what).message
        raise SubmissionRejected(message, problems, status_code=response.status_code)

    # -- fetch -------------------------------------------------------------------------------------

    async def fetch(self, external_id: str) -> RunSnapshot:
        path = f"api/v2/jobs/{external_id}" if self.v2 else f"api/jobs/{external_id}"
        response = await self.request("GET", path, allow=(404,))
        if response.status_code == 404:
            return RunSnapshot(external_id=external_id, status=RunStatus.UNKNOWN, provider_status="not_found")
        what = f"Comfy Cloud job {external_id}"
        if self.v2:
            return self.v2_snapshot(self.validate(V2Job, self.json(response), what))
        return self.v1_snapshot(self.validate(JobDetail, self.json(response), what))

    async def fetch_many(self, external_ids: Iterable[str]) -> dict[str, RunSnapshot | ProviderError]:
        """v1: list calls answer most runs, a page of up to 1,000 jobs per request.

        1. `GET /api/jobs?status=pending,in_progress` pages through the jobs in flight.
        2. The ids not in flight have finished (or vanished): they are looked up in the finished list
           (`status=completed,failed,cancelled`, newest first). An entry is the whole answer when it
           shows every output: none, or one (`preview_output` is then that output: ComfyUI's
           get_outputs_summary). The pages read stay with this client (one sweep): a finished job stays
           finished, so the sweep's later batches find theirs without reading the list again.
        3. Whatever is left (more outputs, beyond the pages read, vanished) is fetched one by one.
        """
        ids = list(dict.fromkeys(external_ids))
        if self.v2 or not ids:
            return await super().fetch_many(ids)
        try:
            results: dict[str, RunSnapshot | ProviderError] = dict(await self._in_flight(set(ids)))
        except ProviderError as exc:
            return dict.fromkeys(ids, exc)
        missing = [i for i in ids if i not in results]
        if missing:
            try:
                await self._finished.read_until(set(missing))
            except ProviderError as exc:
                if exc.retry_after or exc.auth_failed:
                    # Told to slow down (or refused): no one-by-one burst now; these wait for the back-off.
                    results.update(dict.fromkeys((i for i in missing if i not in self._finished.entries), exc))
            # Otherwise the one-by-one calls below still answer what the pages did not.
            results.update(self._finished.answers(missing, lambda _, entry: self._list_snapshot(entry)))
            missing = [i for i in ids if i not in results]
            results.update(await super().fetch_many(missing))
        return {i: results[i] for i in ids}

    async def _in_flight(self, wanted: set[str]) -> dict[str, RunSnapshot]:
        """The wanted jobs the in-flight pages show. The first page's error is the batch's; a later page's
        only ends the reading (the jobs not found yet are looked up in the finished list or on their own)."""
        found: dict[str, RunSnapshot] = {}
        offset = 0
        for number in range(min(jobs_list.MAX_PAGES, len(wanted) // jobs_list.PAGE_SIZE + 2)):
            try:
                page = await jobs_list.read_page(self, jobs_list.IN_FLIGHT, offset)
            except ProviderError:
                if number == 0:
                    raise
                break
            offset += page.entries
            for entry in page.jobs:
                if entry["id"] in wanted and (snapshot := self._list_snapshot(entry)) is not None:
                    found[entry["id"]] = snapshot
            if len(found) == len(wanted) or not page.more:
                break
        return found

    def _list_snapshot(self, entry: dict[str, Any]) -> RunSnapshot | None:
        """A list entry as a snapshot, or None when it does not tell everything (then the job is fetched)."""
        try:
            job = JobDetail.model_validate(entry)
        except ValidationError:
            return None
        status = V1_STATUS.get(job.status.strip().lower())
        if status is None or not status.is_terminal:
            return self.v1_snapshot(job)
        items = jobs_list.whole_outputs(entry)
        if items is None:
            return None
        refs = [self._v1_ref(str(i["nodeId"]), str(i.get("mediaType") or "images"), i) for i in items]
        return self.v1_snapshot(job, outputs=refs)

    async def fetch_workflow(self, external_id: str) -> dict[str, Any] | None:
        """v1: the job detail (list entries leave the graph out). v2: the job's workflow sub-resource, whose
        `format: api` is the graph the job ran (`save`, the editor's document, is not API format)."""
        path = f"api/v2/jobs/{external_id}/workflow" if self.v2 else f"api/jobs/{external_id}"
        response = await self.request("GET", path, allow=(404,))
        if response.status_code == 404:
            return None
        what = f"Comfy Cloud workflow of job {external_id}"
        if self.v2:
            answer = self.validate(V2JobWorkflow, self.json(response), what)
            return graph_or_none(answer.workflow) if answer.format == "api" else None
        job = self.validate(JobDetail, self.json(response), what)
        return graph_or_none(job.workflow.get("prompt")) if job.workflow else None

    # -- cancel ------------------------------------------------------------------------------------

    async def cancel(self, external_id: str) -> None:
        if self.v2:
            await self.request("POST", f"api/v2/jobs/{external_id}/cancel")
            return
        # 1. Try to take it off the queue: harmless if it is already running.
        response = await self.request("POST", "api/queue", json={"delete": [external_id]})
        data = self.json(response)
        deleted = data.get("deleted") if isinstance(data, dict) else None
        if isinstance(deleted, list) and external_id in deleted:
            return
        # 2. Not deleted: see where it is.
        snapshot = await self.fetch(external_id)
        if snapshot.status == RunStatus.UNKNOWN:
            raise ProviderError(f"Comfy Cloud does not know job {external_id}.", permanent=True, status_code=404)
        if snapshot.status.is_terminal:
            return  # nothing left to cancel; the next sync records how it ended
        if snapshot.status == RunStatus.QUEUED:
            raise ProviderError(f"Comfy Cloud did not confirm removing job {external_id} from the queue.")
        await self._interrupt_running(external_id)

    async def _interrupt_running(self, external_id: str) -> None:
        if not self.conf.allow_global_interrupt:
            raise Unsupported(
                f"Comfy Cloud job {external_id} is already running, and the v1 API can only interrupt all of this "
                'account\'s running jobs at once. Set {"allow_global_interrupt": true} in the provider config to '
                'allow that, or use {"api": "v2"}, which cancels one job.'
            )
        await self.request("POST", "api/interrupt")

    # -- downloads ---------------------------------------------------------------------------------

    async def resolve_download(self, output: OutputRef) -> str:
        """v1 `/api/view` answers 302 to a signed URL: return that URL (fetch it without our key,
        docs/providers.md, Comfy Cloud "v1 outputs"). Other URLs (v2 signed URLs) are returned as they are."""
        if not self.is_own_host(output.url):
            return output.url  # never send our key to another host
        response = await self.request("GET", output.url, allow=(301, 302, 303, 307, 308))
        if response.is_success:
            return output.url  # served the bytes directly (e.g. with a `channel` param)
        location = response.headers.get("location")
        if not location:
            raise ProviderError(f"Comfy Cloud answered {response.status_code} for an output without a Location.")
        return urljoin(response.url, location)

    async def check(self) -> str:
        if self.v2:
            # No "who am I" in v2: probe a job id that cannot exist; 404 means the key was accepted.
            await self.request("GET", "api/v2/jobs/00000000-0000-0000-0000-000000000000", allow=(404,))
            return "Comfy Cloud (API v2) accepted the key."
        await self.request("GET", "api/jobs", params={"limit": 1})
        return "Comfy Cloud accepted the key."

    # -- errors ------------------------------------------------------------------------------------

    def status_error(self, response: ProviderResponse, what: str) -> ProviderError:
        if response.status_code == 402:
            return ProviderError(
                f"{what} was refused: the Comfy Cloud account has insufficient credits (402).",
                permanent=True,
                status_code=402,
            )
        return super().status_error(response, what)

    def error_detail(self, response: ProviderResponse) -> str:
        """v1 {code, message}; /api/prompt {error: {type, message}, node_errors}; v2 {error: {code, message,
        details: {node_errors}}}. Node errors are named so a person can find the broken node."""
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        detail = super().error_detail(response)
        if isinstance(body, dict):
            nodes = node_errors_text(body)
            if nodes:
                detail = f"{detail} — {nodes}" if detail else nodes
        return detail

    # -- snapshots ---------------------------------------------------------------------------------

    def v1_snapshot(self, job: JobDetail, outputs: list[OutputRef] | None = None) -> RunSnapshot:
        messages = _messages(job.execution_status)
        started = parse_timestamp(job.execution_start_time) or parse_timestamp(messages.get("execution_start"))
        status = V1_STATUS.get(job.status.strip().lower()) or (RunStatus.RUNNING if started else RunStatus.QUEUED)
        finished = None
        if status.is_terminal:
            end = job.execution_end_time or next((messages[e] for e in END_EVENTS if e in messages), None)
            # update_time is the last status change, which for a finished job is when it ended.
            finished = parse_timestamp(end) or parse_timestamp(job.update_time)
        created = parse_timestamp(job.create_time)
        return RunSnapshot(
            external_id=job.id,
            status=status,
            provider_status=job.status,
            created=created,
            queued=created,  # Cloud queues a prompt when it accepts it
            started=started,
            finished=finished,
            error=v1_error(job) if status == RunStatus.FAILED else None,
            outputs=tuple(self.v1_outputs(job.outputs or {}) if outputs is None else outputs),
            workflow=graph_or_none(job.workflow.get("prompt")) if job.workflow else None,
        )

    def v1_outputs(self, outputs: Mapping[str, Any]) -> list[OutputRef]:
        refs: list[OutputRef] = []
        for node_id, node_output in outputs.items():
            if not isinstance(node_output, dict):
                continue
            for media_key, items in node_output.items():
                if not isinstance(items, list):
                    continue
                refs.extend(self._v1_ref(str(node_id), media_key, item) for item in items if _is_file(item))
        return refs

    def _v1_ref(self, node_id: str, media_key: str, item: dict[str, Any]) -> OutputRef:
        filename, subfolder = str(item["filename"]), str(item.get("subfolder") or "")
        query = view_query(filename, subfolder, str(item.get("type") or "output"))
        return OutputRef(
            key=f"{node_id}/{subfolder}/{filename}",
            filename=filename,
            kind=guess_kind(filename, media_key),
            url=self.url(f"api/view?{query}"),
            node_id=node_id,
            content_type=content_type_for(filename),
            url_expires=None,  # /api/view itself doesn't expire; the signed URL it redirects to does
        )

    def v2_snapshot(self, job: V2Job) -> RunSnapshot:
        started = parse_timestamp(job.started_at)
        status = V2_STATUS.get(job.status.strip().lower()) or (RunStatus.RUNNING if started else RunStatus.QUEUED)
        progress = job.progress
        created = parse_timestamp(job.created_at)
        return RunSnapshot(
            external_id=job.id,
            status=status,
            provider_status=job.status,
            progress=clamp_progress(progress.value) if progress else None,
            live_status=(progress.message or progress.current_node_class) if progress else None,
            created=created,
            queued=created,
            started=started,
            finished=parse_timestamp(job.completed_at),
            error=v2_error(job, status),
            outputs=tuple(v2_outputs(job.outputs or [])),
            queue_position=job.queue_position if status == RunStatus.QUEUED else None,
            # The v2 API bills GPU seconds; execution_ms is the time the job held the GPU.
            gpu_seconds=usage_seconds(job.metrics.execution_ms, 1000) if job.metrics and status.is_terminal else None,
        )


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def apply_inputs(workflow: dict[str, Any], inputs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Copy the API-format graph with inputs {"<node_id>.<input_name>": value} written into it."""
    if not isinstance(workflow, dict) or not workflow:
        raise ProviderError("Comfy Cloud needs an API-format workflow (a dict of nodes).", permanent=True)
    graph = {node_id: dict(node) if isinstance(node, dict) else node for node_id, node in workflow.items()}
    for key, value in (inputs or {}).items():
        node_id, _, name = str(key).partition(".")
        node = graph.get(node_id)
        if not name or not isinstance(node, dict):
            problem = FieldProblem(str(key), 'must be "<node_id>.<input_name>" of a node in the workflow')
            raise SubmissionRejected(f'Comfy Cloud input "{key}" {problem.message}.', [problem])
        node["inputs"] = {**(node.get("inputs") or {}), name: value}
    return graph


def node_errors_text(body: Mapping[str, Any]) -> str:
    """ "node 3 (KSampler): Required input is missing: model; …" from either API's error body."""
    node_errors = body.get("node_errors")
    error = body.get("error")
    if not node_errors and isinstance(error, dict) and isinstance(error.get("details"), dict):
        node_errors = error["details"].get("node_errors")
    if not isinstance(node_errors, dict):
        return ""
    parts = [_node_error_text(str(node_id), value) for node_id, value in node_errors.items()]
    return "; ".join(p for p in parts if p)[:600]


def _node_error_text(node_id: str, value: Any) -> str:
    class_type = value.get("class_type") if isinstance(value, dict) else None
    errors = value.get("errors", []) if isinstance(value, dict) else value
    texts = []
    for err in errors if isinstance(errors, list) else []:
        if isinstance(err, dict):
            message = err.get("message") or err.get("reason") or ""
            extra = err.get("details") or err.get("field") or ""
            texts.append(f"{message}: {extra}" if message and extra else str(message or extra))
    name = f"node {node_id}" + (f" ({class_type})" if class_type else "")
    return f"{name}: {', '.join(t for t in texts if t) or 'invalid'}"


def _messages(execution_status: Mapping[str, Any] | None) -> dict[str, Any]:
    """ComfyUI status messages [[event, {…, timestamp ms}], …] -> {event: timestamp}."""
    found: dict[str, Any] = {}
    for message in (execution_status or {}).get("messages") or []:
        if isinstance(message, list | tuple) and len(message) == 2 and isinstance(message[1], dict):
            found.setdefault(str(message[0]), message[1].get("timestamp"))
    return found


def _is_file(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("filename"), str) and bool(item["filename"])


def _traceback(value: list[str] | str | None) -> str | None:
    if isinstance(value, list):
        return "".join(str(line) for line in value) or None
    return value or None


def v1_error(job: JobDetail) -> RunError:
    err = job.execution_error
    if err is None:
        return RunError(message="Comfy Cloud reported the job failed without details.")
    where = f" in node {err.node_id}" + (f" ({err.node_type})" if err.node_type else "") if err.node_id else ""
    return RunError(
        message=err.exception_message or f"Comfy Cloud reported the job failed{where}.",
        node_id=err.node_id,
        node_type=err.node_type,
        exception_type=err.exception_type,
        traceback=_traceback(err.traceback),
    )


def v2_error(job: V2Job, status: RunStatus) -> RunError | None:
    err = job.error
    if err is not None and status in (RunStatus.FAILED, RunStatus.TIMED_OUT):
        return RunError(
            message=err.message or err.code or "Comfy Cloud reported the job failed.",
            node_id=err.node_id,
            node_type=err.class_type,
            exception_type=err.code,
            traceback=_traceback(err.traceback),
        )
    if status == RunStatus.FAILED:
        return RunError(message="Comfy Cloud reported the job failed without details.")
    if status == RunStatus.TIMED_OUT:
        return RunError(message="Comfy Cloud expired the job before it finished.")
    return None


def v2_outputs(items: Iterable[dict[str, Any]]) -> list[OutputRef]:
    refs: list[OutputRef] = []
    for item in items:
        try:
            out = V2Output.model_validate(item)
        except ValidationError:
            continue  # e.g. a text output without a URL: nothing to archive
        filename = out.name or out.url.rsplit("/", 1)[-1].split("?", 1)[0] or "output"
        refs.append(
            OutputRef(
                key=out.id or f"{out.node_id}/{filename}",
                filename=filename,
                kind=V2_KINDS.get(out.type or "") or guess_kind(filename),
                url=out.url,
                node_id=out.node_id,
                content_type=out.content_type or content_type_for(filename),
                url_expires=parse_timestamp(out.url_expires_at),
                size_bytes=out.size_bytes,
            )
        )
    return refs
