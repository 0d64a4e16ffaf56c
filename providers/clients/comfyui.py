"""Self-hosted OSS ComfyUI: `/prompt`, `/queue`, `/history`, `/interrupt`, `/view` (docs/providers.md).

ComfyUI keeps a run in `/queue` while it is pending or running and moves it to `/history` when it
finishes; an id in neither is unknown (never submitted, deleted from the pending queue, the server
restarted, or history trimmed). There is no auth unless a reverse proxy adds one, so the optional
secret is one header name and value that the proxy checks.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterable
from typing import Any

from pydantic import Field, model_validator

from providers.clients import jobs_list
from providers.clients.base import (
    FieldProblem,
    OutputRef,
    ProviderClient,
    ProviderError,
    RemoteModel,
    RunError,
    RunSnapshot,
    RunStatus,
    SecretModel,
    SubmissionRejected,
    content_type_for,
    graph_or_none,
    guess_kind,
    parse_timestamp,
    view_query,
)

# RFC 9110 token characters: what a header name may contain.
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
# Headers a proxy secret must not replace: they would break the request itself.
_RESERVED_HEADERS = {"host", "content-length", "content-type", "transfer-encoding", "connection", "user-agent"}
_CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Below this many ids, one /history/{id} each beats listing recent history (whose entries carry whole prompts).
_PER_ID_HISTORY_MAX = 4
_HISTORY_SLACK = 16
_HISTORY_LIST_MAX = 256


class ComfyUISecret(SecretModel):
    """No secret, or one header a reverse proxy in front of ComfyUI checks (both or neither)."""

    header: str | None = None
    value: str | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> ComfyUISecret:
        if bool(self.header) != bool(self.value):
            raise ValueError("set both header and value, or neither")
        if self.header and (not _HEADER_NAME.match(self.header) or self.header.lower() in _RESERVED_HEADERS):
            raise ValueError("header is not a usable HTTP header name")
        if self.value and ("\n" in self.value or "\r" in self.value):
            raise ValueError("value must be a single line")
        return self


# -- remote shapes (tolerant: ComfyUI adds keys between versions) ------------------------------


class HistoryStatus(RemoteModel):
    status_str: str | None = None
    completed: bool | None = None
    messages: list[Any] = Field(default_factory=list)


class HistoryEntry(RemoteModel):
    # prompt = [number, prompt_id, prompt, extra_data, outputs_to_execute]
    prompt: list[Any] = Field(default_factory=list)
    outputs: dict[str, Any] = Field(default_factory=dict)
    status: HistoryStatus | None = None


class QueueBody(RemoteModel):
    # Each item is [number, prompt_id, prompt, extra_data, outputs_to_execute] (sensitive keys removed).
    queue_running: list[Any] = Field(default_factory=list)
    queue_pending: list[Any] = Field(default_factory=list)


class PromptAccepted(RemoteModel):
    prompt_id: str
    number: int | None = None


class ComfyUIClient(ProviderClient):
    kind = "comfyui"
    label = "ComfyUI (self-hosted)"
    Secret = ComfyUISecret
    secret: ComfyUISecret
    default_base_url = "http://127.0.0.1:8188"
    has_list_call = True
    forgets_runs_on_restart = True
    inputs_override_nodes = True

    def configure(self) -> None:
        self._finished = jobs_list.FinishedJobs(self)  # see fetch_many
        self._jobs_api_missing = False  # an older build answered 404 for /api/jobs

    def auth_headers(self) -> dict[str, str]:
        secret: ComfyUISecret = self.secret
        return {secret.header: secret.value} if secret.header and secret.value else {}

    # -- submit --------------------------------------------------------------------------------

    async def submit(self, workflow: dict[str, Any], inputs: dict[str, Any], options: dict[str, Any]) -> str:
        """POST /prompt with a prompt_id we choose, so a retried submit after a lost answer is idempotent."""
        prompt = apply_inputs(check_api_workflow(workflow, self.label), inputs, self.label)
        prompt_id = str(options.get("prompt_id") or uuid.uuid4())
        if not _CANONICAL_UUID.match(prompt_id):
            raise ProviderError("ComfyUI needs prompt_id as a canonical lowercase UUID.", permanent=True)
        body: dict[str, Any] = {
            "prompt": prompt,
            # Most WebSocket events go only to the submitting client_id.
            "client_id": str(options.get("client_id") or self.config.get("client_id") or "comfytrack"),
            "prompt_id": prompt_id,
        }
        if isinstance(options.get("extra_data"), dict):
            body["extra_data"] = options["extra_data"]
        response = await self.request("POST", "/prompt", json=body, allow=(400,))
        data = self.json(response)
        if response.status_code == 400:
            raise SubmissionRejected(describe_prompt_error(data), prompt_error_problems(data), status_code=400)
        accepted = self.validate(PromptAccepted, data, f"{self.label} POST /prompt")
        # ComfyUI before client-chosen ids ignores ours and answers with its own: that one is the truth.
        return accepted.prompt_id

    # -- fetch ---------------------------------------------------------------------------------

    async def fetch(self, external_id: str) -> RunSnapshot:
        """1. /history/{id}: finished runs (the common case once a run is old).
        2. /queue: pending or running.
        3. In neither: ask /history once more, because the run may have finished between 1 and 2
           (ComfyUI writes history before it drops the run from the queue). Still absent: UNKNOWN.
        """
        entry = await self._history_one(external_id)
        if entry is not None:
            return self.history_snapshot(external_id, entry)
        queued = self.queue_snapshots(await self._queue())
        if external_id in queued:
            return queued[external_id]
        entry = await self._history_one(external_id)
        if entry is not None:
            return self.history_snapshot(external_id, entry)
        return not_found(external_id)

    async def fetch_many(self, external_ids: Iterable[str]) -> dict[str, RunSnapshot | ProviderError]:
        """One GET /queue, then history for the ids not in it: a few ids get /history/{id} each; more are
        looked up in the finished jobs list (`/api/jobs`, recent builds: small entries, 1,000 a page, the
        pages kept for the sweep), then in one GET /history?max_items=N (older builds; whole graphs, so
        capped), and per-id calls only for ids those missed. Queue first, then history, so a run that
        finishes in between is seen.
        """
        ids = list(dict.fromkeys(external_ids))
        try:
            queued = self.queue_snapshots(await self._queue())
        except ProviderError as exc:
            return dict.fromkeys(ids, exc)
        results: dict[str, RunSnapshot | ProviderError] = {i: queued[i] for i in ids if i in queued}
        missing = [i for i in ids if i not in queued]
        if len(missing) > _PER_ID_HISTORY_MAX:
            results.update(await self._from_jobs_list(missing))
            missing = [i for i in missing if i not in results]
        if len(missing) > _PER_ID_HISTORY_MAX:
            results.update(await self._from_history_list(missing))
            missing = [i for i in missing if i not in results]
        results.update(await self._from_history_each(missing))
        return {i: results[i] for i in ids}

    async def _from_jobs_list(self, ids: list[str]) -> dict[str, RunSnapshot | ProviderError]:
        """The finished ids whose list entries tell everything (jobs_list.whole_outputs); {} on builds
        without `/api/jobs`, which are then not asked again by this client.

        Told to slow down (429/503 with Retry-After) or refused (a proxy's 401/403), the ids the pages
        did not show get that error: no burst of history calls now, they wait for the back-off.
        """
        if self._jobs_api_missing:
            return {}
        held: dict[str, RunSnapshot | ProviderError] = {}
        try:
            await self._finished.read_until(set(ids))
        except ProviderError as exc:
            self._jobs_api_missing = exc.status_code == 404
            if exc.retry_after or exc.auth_failed:
                held = dict.fromkeys((i for i in ids if i not in self._finished.entries), exc)
        return {**held, **self._finished.answers(ids, self.job_snapshot)}

    async def _from_history_list(self, ids: list[str]) -> dict[str, RunSnapshot]:
        max_items = min(len(ids) + _HISTORY_SLACK, _HISTORY_LIST_MAX)
        try:
            response = await self.request("GET", "/history", params={"max_items": max_items})
            body = self.json(response)
        except ProviderError:
            return {}  # e.g. more than max_body_bytes: the per-id calls still answer
        if not isinstance(body, dict):
            return {}
        found: dict[str, RunSnapshot] = {}
        for external_id in ids:
            if isinstance(body.get(external_id), dict):
                try:
                    found[external_id] = self.history_snapshot(external_id, self._entry(body[external_id]))
                except ProviderError:
                    continue
        return found

    async def _from_history_each(self, ids: list[str]) -> dict[str, RunSnapshot | ProviderError]:
        limit = asyncio.Semaphore(self.options.fetch_concurrency)

        async def one(external_id: str) -> RunSnapshot | ProviderError:
            async with limit:
                try:
                    entry = await self._history_one(external_id)
                except ProviderError as exc:
                    return exc
                return not_found(external_id) if entry is None else self.history_snapshot(external_id, entry)

        snapshots = await asyncio.gather(*(one(i) for i in ids))
        return dict(zip(ids, snapshots, strict=True))

    async def _history_one(self, external_id: str) -> HistoryEntry | None:
        response = await self.request("GET", f"/history/{external_id}")
        body = self.json(response)
        if not isinstance(body, dict):
            raise ProviderError(f"{self.label} GET /history: unexpected response (not an object).")
        # An unknown or unfinished id gives `{}` (confirmed on 0.3.64).
        raw = body.get(external_id)
        return None if raw is None else self._entry(raw)

    def _entry(self, raw: Any) -> HistoryEntry:
        return self.validate(HistoryEntry, raw, f"{self.label} GET /history")

    async def _queue(self) -> QueueBody:
        response = await self.request("GET", "/queue")
        return self.validate(QueueBody, self.json(response), f"{self.label} GET /queue")

    # -- parsing -------------------------------------------------------------------------------

    def queue_snapshots(self, queue: QueueBody) -> dict[str, RunSnapshot]:
        snapshots: dict[str, RunSnapshot] = {}
        for item in queue_items(queue.queue_running):
            snapshots[item[1]] = _queue_snapshot(item, RunStatus.RUNNING, "queue_running", None)
        # queue_pending is ComfyUI's heap array, not in run order: sort by number (lower runs first).
        pending = sorted(queue_items(queue.queue_pending), key=_queue_number)
        for position, item in enumerate(pending):
            snapshots.setdefault(item[1], _queue_snapshot(item, RunStatus.QUEUED, "queue_pending", position))
        return snapshots

    def history_snapshot(self, external_id: str, entry: HistoryEntry) -> RunSnapshot:
        status = entry.status or HistoryStatus()
        events = history_events(status.messages)
        raw = status.status_str or ("success" if status.completed else "")
        created = parse_timestamp(_extra_data(entry.prompt).get("create_time"))
        common: dict[str, Any] = {
            "external_id": external_id,
            "provider_status": raw or "unknown",
            "created": created,
            "queued": created,  # ComfyUI queues a prompt the moment it accepts it.
            "started": parse_timestamp(events.get("execution_start", {}).get("timestamp")),
            "finished": _finished(events),
            "workflow": _graph(entry.prompt),
        }
        if raw == "success":
            outputs = self.outputs(entry.outputs)
            return RunSnapshot(status=RunStatus.SUCCEEDED, progress=1.0, outputs=outputs, **common)
        if "execution_interrupted" in events:
            # An interrupt is stored as status_str "error"; only this message tells it apart (jobs.py).
            where = _node_label(events["execution_interrupted"])
            return RunSnapshot(status=RunStatus.CANCELLED, live_status=f"Interrupted{where}", **common)
        if raw == "error":
            return RunSnapshot(status=RunStatus.FAILED, error=run_error(events), **common)
        # An unknown status_str: in flight, so the next poll looks again rather than ending the run.
        return RunSnapshot(status=RunStatus.RUNNING, **common)

    def job_snapshot(self, external_id: str, entry: dict[str, Any]) -> RunSnapshot | None:
        """A finished `/api/jobs` entry as the snapshot its history entry gives, or None when the entry
        does not show every output or has another status (an interrupt is read from the history, which
        names the node it stopped at): the history is asked instead."""
        items = jobs_list.whole_outputs(entry)
        if items is None:
            return None
        created = parse_timestamp(entry.get("create_time"))
        common: dict[str, Any] = {
            "external_id": external_id,
            "created": created,
            "queued": created,
            "started": parse_timestamp(entry.get("execution_start_time")),
            "finished": parse_timestamp(entry.get("execution_end_time")),
        }
        status = entry.get("status")
        # provider_status as the history spells it (status_str), whichever call answered.
        if status == "completed":
            refs = (self.output_ref(str(i["nodeId"]), str(i.get("mediaType") or "images"), i) for i in items)
            outputs = tuple(ref for ref in refs if ref is not None)
            return RunSnapshot(
                status=RunStatus.SUCCEEDED, provider_status="success", progress=1.0, outputs=outputs, **common
            )
        if status == "failed":
            error = entry.get("execution_error")
            events = {"execution_error": error} if isinstance(error, dict) else {}
            return RunSnapshot(status=RunStatus.FAILED, provider_status="error", error=run_error(events), **common)
        return None

    def outputs(self, outputs: dict[str, Any]) -> tuple[OutputRef, ...]:
        refs: dict[str, OutputRef] = {}
        for node_id, node_output in outputs.items():
            if not isinstance(node_output, dict):
                continue
            for key, items in node_output.items():
                if not isinstance(items, list):
                    continue
                # Only dicts with a filename are files: `text` holds strings, `animated` holds bools.
                for item in items:
                    ref = self.output_ref(str(node_id), key, item)
                    if ref is not None:
                        refs.setdefault(ref.key, ref)
        return tuple(refs.values())

    def output_ref(self, node_id: str, key: str, item: Any) -> OutputRef | None:
        """One `{filename, subfolder, type, ...}` item -> OutputRef; text strings and bools are not files."""
        if not isinstance(item, dict) or not isinstance(item.get("filename"), str) or not item["filename"]:
            return None
        filename, subfolder = item["filename"], str(item.get("subfolder") or "")
        folder_type = str(item.get("type") or "output")
        query = view_query(filename, subfolder, folder_type)
        return OutputRef(
            # `type` is in the key, so a temp preview and a saved output of the same name never collide;
            # `temp` files live in ComfyUI's temp dir, which it empties on restart.
            key="/".join(p for p in (node_id, folder_type, subfolder, filename) if p),
            filename=filename,
            kind=guess_kind(filename, key),
            url=f"{self.base_url}/view?{query}",
            node_id=node_id,
            content_type=content_type_for(filename),
            width=_int_or_none(item.get("width")),
            height=_int_or_none(item.get("height")),
        )

    async def fetch_workflow(self, external_id: str) -> dict[str, Any] | None:
        """A finished run answered from the jobs list (whose entries leave the graph out): its history entry."""
        entry = await self._history_one(external_id)
        return None if entry is None else _graph(entry.prompt)

    # -- cancel and check ----------------------------------------------------------------------

    async def cancel(self, external_id: str) -> None:
        """Pending: delete it from the queue. Running: POST /interrupt {prompt_id}, which recent ComfyUI
        applies only when that prompt is the running one. A pending run can start between our look and
        the delete, so look again after deleting and interrupt it if it is running by then.
        """
        queued = self.queue_snapshots(await self._queue())
        snapshot = queued.get(external_id)
        if snapshot is None:
            return  # finished or unknown: nothing left to cancel, the next fetch tells which
        if snapshot.status is RunStatus.QUEUED:
            await self.request("POST", "/queue", json={"delete": [external_id]})
            snapshot = self.queue_snapshots(await self._queue()).get(external_id)
        if snapshot is not None and snapshot.status is RunStatus.RUNNING:
            await self.request("POST", "/interrupt", json={"prompt_id": external_id})

    async def check(self) -> str:
        response = await self.request("GET", "/system_stats", allow=(404,))
        if response.status_code == 404:
            await self._queue()  # a build without /system_stats still has /queue
            return f"{self.label} answered."
        body = self.json(response)
        version = body.get("system", {}).get("comfyui_version") if isinstance(body, dict) else None
        return f"{self.label} {version} answered." if isinstance(version, str) else f"{self.label} answered."


# -- helpers ------------------------------------------------------------------------------------


def not_found(external_id: str) -> RunSnapshot:
    """Neither queued nor in history: the sync engine decides when that means `lost`."""
    return RunSnapshot(external_id=external_id, status=RunStatus.UNKNOWN, provider_status="not_found")


def queue_items(items: list[Any]) -> list[list[Any]]:
    return [i for i in items if isinstance(i, list) and len(i) > 1 and isinstance(i[1], str)]


def _queue_number(item: list[Any]) -> float:
    return item[0] if isinstance(item[0], int | float) and not isinstance(item[0], bool) else float("inf")


def _queue_snapshot(item: list[Any], status: RunStatus, raw: str, position: int | None) -> RunSnapshot:
    created = parse_timestamp(_extra_data(item).get("create_time"))  # recent ComfyUI only
    return RunSnapshot(
        external_id=item[1],
        status=status,
        provider_status=raw,
        created=created,
        queued=created,
        queue_position=position,
        workflow=_graph(item),
    )


def _graph(prompt_tuple: list[Any]) -> dict[str, Any] | None:
    """The prompt graph of a queue item or history entry: [number, prompt_id, prompt, extra_data, outputs]."""
    return graph_or_none(prompt_tuple[2]) if len(prompt_tuple) > 2 else None


def _extra_data(prompt_tuple: list[Any]) -> dict[str, Any]:
    return prompt_tuple[3] if len(prompt_tuple) > 3 and isinstance(prompt_tuple[3], dict) else {}


def history_events(messages: list[Any]) -> dict[str, dict[str, Any]]:
    """`[[event_name, data], ...]` -> {event_name: data} (the last one of each name wins)."""
    events: dict[str, dict[str, Any]] = {}
    for message in messages:
        if isinstance(message, list | tuple) and len(message) == 2 and isinstance(message[0], str):
            events[message[0]] = message[1] if isinstance(message[1], dict) else {}
    return events


def _finished(events: dict[str, dict[str, Any]]) -> Any:
    for name in ("execution_success", "execution_error", "execution_interrupted"):
        if name in events:
            return parse_timestamp(events[name].get("timestamp"))
    return None


def _node_label(data: dict[str, Any]) -> str:
    node_id, node_type = data.get("node_id"), data.get("node_type")
    if node_id and node_type:
        return f" at node {node_id} ({node_type})"
    return f" at node {node_id}" if node_id else ""


def run_error(events: dict[str, dict[str, Any]]) -> RunError:
    data = events.get("execution_error")
    if data is None:
        return RunError("ComfyUI reported an error but recorded no details.")
    traceback = data.get("traceback")
    if isinstance(traceback, list):
        traceback = "".join(str(line) for line in traceback)
    message = str(data.get("exception_message") or "").strip() or "ComfyUI reported an error."
    return RunError(
        message=message,
        node_id=_str_or_none(data.get("node_id")),
        node_type=_str_or_none(data.get("node_type")),
        exception_type=_str_or_none(data.get("exception_type")),
        traceback=traceback if isinstance(traceback, str) and traceback else None,
    )


def describe_prompt_error(body: Any) -> str:
    """A 400 from POST /prompt, e.g. recorded-comfyui/post_prompt_validation_error.json, in one message
    that names each failing node, its class type and what is wrong with it."""
    if not isinstance(body, dict):
        return "ComfyUI rejected the workflow (no details)."
    error = body["error"] if isinstance(body.get("error"), dict) else {}
    head = str(error.get("message") or error.get("type") or "invalid prompt").rstrip(".")
    if error.get("details"):
        head += f" ({error['details']})"
    parts = [f"ComfyUI rejected the workflow: {head}."]
    node_errors = body["node_errors"] if isinstance(body.get("node_errors"), dict) else {}
    for node_id, node in node_errors.items():
        if isinstance(node, dict):
            parts.append(f"Node {node_id} ({node.get('class_type') or '?'}): {_node_error_text(node)}.")
    return " ".join(parts)


def _node_error_text(node: dict[str, Any]) -> str:
    texts = []
    for error in node.get("errors") or []:
        if isinstance(error, dict):
            text = str(error.get("message") or error.get("type") or "invalid")
            texts.append(f"{text}: {error['details']}" if error.get("details") else text)
    return "; ".join(texts) or "invalid"


def prompt_error_problems(body: Any) -> tuple[FieldProblem, ...]:
    """The nodes and inputs a 400 from POST /prompt blames, one problem per error: `field` is
    "<node>.<input>" where ComfyUI names the input (extra_info.input_name), else "<node>"."""
    if not isinstance(body, dict):
        return ()
    problems = []
    node_errors: dict[str, Any] = body["node_errors"] if isinstance(body.get("node_errors"), dict) else {}
    for node_id, node in node_errors.items():
        if not isinstance(node, dict):
            continue
        where = f"Node {node_id} ({node.get('class_type') or '?'})"
        for error in node.get("errors") or []:
            if not isinstance(error, dict):
                continue
            extra: dict[str, Any] = error["extra_info"] if isinstance(error.get("extra_info"), dict) else {}
            input_name = extra.get("input_name")
            field = f"{node_id}.{input_name}" if isinstance(input_name, str) and input_name else str(node_id)
            problems.append(FieldProblem(field, f"{where}: {_node_error_text({'errors': [error]})}."))
    if not problems:
        # e.g. an unknown node type: the node is only named in the details, "Node ID '#1'".
        head: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else {}
        named = _NODE_IN_DETAILS.search(str(head.get("details") or ""))
        message = str(head.get("message") or head.get("type") or "ComfyUI rejected the workflow")
        problems.append(FieldProblem(named.group(1) if named else "workflow", message))
    return tuple(problems)


_NODE_IN_DETAILS = re.compile(r"Node ID '#([^']+)'")


def check_api_workflow(workflow: Any, label: str) -> dict[str, Any]:
    """ComfyUI runs the API format `{node_id: {class_type, inputs}}`; the UI format (nodes + links) fails late."""
    if not isinstance(workflow, dict) or not workflow:
        raise SubmissionRejected(
            f"{label} needs a workflow in API format ({{node_id: {{class_type, inputs}}}}).",
            [FieldProblem("workflow", "not an API-format workflow")],
        )
    if isinstance(workflow.get("nodes"), list) and "links" in workflow:
        raise SubmissionRejected(
            f"{label} needs the workflow in API format; this is the UI format (use “Export (API)”).",
            [FieldProblem("workflow", "UI format, not API format")],
        )
    return workflow


def override_problems(workflow: Any, inputs: Any) -> list[FieldProblem]:
    """Inputs that name no node of the workflow (or give a node something other than an object of
    input values): checked before anything is sent, each named by its key."""
    graph = workflow if isinstance(workflow, dict) else {}
    problems = []
    for key, value in (inputs or {}).items() if isinstance(inputs, dict) else ():
        node_id, _, name = str(key).partition(".")
        if not isinstance(graph.get(node_id), dict):
            message = f"input {key!r} names node {node_id!r}, which is not in the workflow"
        elif not name and not isinstance(value, dict):
            message = f'input {key!r} needs an input name ("{node_id}.seed") or an object of input values'
        else:
            continue
        problems.append(FieldProblem(str(key), message))
    return problems


def apply_inputs(workflow: dict[str, Any], inputs: dict[str, Any], label: str) -> dict[str, Any]:
    """Inputs override node inputs: `{"3": {"seed": 1}}` or `{"3.seed": 1}`. Returns a new graph."""
    problems = override_problems(workflow, inputs)
    if problems:
        raise SubmissionRejected(f"{label}: " + "; ".join(p.message for p in problems) + ".", problems)
    return effective_workflow(workflow, inputs)


def effective_workflow(workflow: dict[str, Any], inputs: dict[str, Any] | None) -> dict[str, Any]:
    """The graph as it runs: a copy with the overrides written into the nodes' inputs (keys naming no
    node are left out)."""
    graph = {node_id: dict(node) if isinstance(node, dict) else node for node_id, node in workflow.items()}
    for key, value in (inputs or {}).items():
        node_id, _, name = str(key).partition(".")
        overrides = {name: value} if name else value
        node = graph.get(node_id)
        if isinstance(node, dict) and isinstance(overrides, dict):
            current: dict[str, Any] = node["inputs"] if isinstance(node.get("inputs"), dict) else {}
            node["inputs"] = {**current, **overrides}
    return graph


def _str_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
