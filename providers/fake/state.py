"""Scripted run lifecycles and fault switches for the fake provider server."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# Generic phases; each provider module renders them in its own vocabulary.
QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
TIMED_OUT = "timed_out"
# The provider forgot the run (ComfyUI restarted, history trimmed, record deleted): 404 / absent.
VANISHED = "vanished"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED, TIMED_OUT, VANISHED})

# Set by the fault middleware: render the run as a stale replica would (its previous phase).
STALE = web.RequestKey("stale", bool)


def is_stale(request: web.Request) -> bool:
    return request.get(STALE, False)


DEFAULT_SCRIPT: tuple[tuple[float, str], ...] = ((0.0, QUEUED), (0.5, RUNNING), (1.5, SUCCEEDED))


@dataclass
class FakeRun:
    """One run on the fake provider.

    `script` is a list of (seconds after `created`, phase), in order. The phase at time t is the
    last entry whose offset <= t. `force(phase)` overrides the script from now on (tests use it to
    move a run along without sleeping).
    """

    kind: str
    external_id: str
    created: float = field(default_factory=time.time)
    script: tuple[tuple[float, str], ...] = DEFAULT_SCRIPT
    n_outputs: int = 1
    error: dict[str, Any] | None = None
    workflow: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    forced: list[tuple[float, str]] = field(default_factory=list)
    # Submission order on this server (ComfyUI's prompt "number"), assigned by FakeState.add_run.
    number: int = 0
    # timeline(), worked out once per change: list calls ask every run for its phase (the sync
    # benchmark's 10,000s of runs), and the fake's CPU competes with the engine's on the same cores.
    _timeline: list[tuple[float, str]] | None = field(default=None, repr=False, compare=False)

    def force(self, phase: str, at: float | None = None) -> None:
        self.forced.append((at if at is not None else time.time(), phase))
        self._timeline = None

    def timeline(self) -> list[tuple[float, str]]:
        """Absolute (time, phase) changes: the script, cut off where a forced phase takes over."""
        if self._timeline is None:
            changes = [(self.created + offset, phase) for offset, phase in self.script]
            for at, phase in self.forced:
                changes = [c for c in changes if c[0] < at] + [(at, phase)]
            self._timeline = changes
        return self._timeline

    def phase(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        timeline = self.timeline()
        current = timeline[0][1]
        for at, phase in timeline:
            if at <= now:
                current = phase
        return current

    def previous_phase(self, now: float | None = None) -> str:
        """The phase before the current one: what a stale replica would answer."""
        now = time.time() if now is None else now
        seen = [phase for at, phase in self.timeline() if at <= now] or [self.timeline()[0][1]]
        return seen[-2] if len(seen) > 1 else seen[-1]

    def phase_seen(self, stale: bool, now: float | None = None) -> str:
        """The phase an answer shows: the previous one when the stale-replica fault is on (`is_stale`)."""
        return self.previous_phase(now) if stale else self.phase(now)

    def entered(self, phase: str, now: float | None = None) -> float | None:
        """When the run entered `phase` (None if it has not, yet)."""
        now = time.time() if now is None else now
        for at, p in self.timeline():
            if p == phase and at <= now:
                return at
        return None

    def finished_at(self, now: float | None = None) -> float | None:
        now = time.time() if now is None else now
        for at, p in self.timeline():
            if p in TERMINAL and at <= now:
                return at
        return None

    def progress(self, now: float | None = None) -> float:
        """0..1: linear over the running phase, 1 once succeeded."""
        now = time.time() if now is None else now
        phase = self.phase(now)
        if phase == SUCCEEDED:
            return 1.0
        started = self.entered(RUNNING, now)
        if started is None:
            return 0.0
        end = next((at for at, p in self.timeline() if at > started and p != RUNNING), started + 1.0)
        return round(min(max((now - started) / max(end - started, 1e-6), 0.0), 0.99), 2)

    def output_names(self) -> list[str]:
        return [f"ComfyUI_{i + 1:05d}_.png" for i in range(self.n_outputs)]


@dataclass
class Faults:
    """Fault switches. `remaining` limits how many requests are affected (None: all of them)."""

    latency_ms: float = 0.0
    mode: str | None = None  # "5xx" | "429" | "malformed" | "truncated" | "html" | "stall" | "stale" | "huge"
    retry_after: int = 2
    stall_seconds: float = 30.0
    remaining: int | None = None
    only_kind: str | None = None

    MODES = ("5xx", "429", "malformed", "truncated", "html", "stall", "stale", "huge")

    def take(self, kind: str) -> str | None:
        """The fault to apply to one request of `kind`, consuming one from `remaining`."""
        if self.mode is None or (self.only_kind and self.only_kind != kind):
            return None
        if self.remaining is not None:
            if self.remaining <= 0:
                return None
            self.remaining -= 1
        return self.mode


# The secrets a new fake server accepts, per kind (the demo configures its providers with them).
DEFAULT_SECRETS: dict[str, dict[str, str]] = {
    "comfydeploy": {"token": "cd-fake-token"},
    "comfycloud": {"api_key": "cc-fake-key"},
    "comfyui": {},
    "aws_esd": {"api_key": "esd-fake-key", "username": "api"},
    "speedpix": {"app_key": "sp-fake-app-key", "app_secret": "sp-fake-app-secret"},
}


class FakeState:
    """All runs and switches of one fake server. Accessed from the server's event loop thread and
    from tests; plain dict operations on CPython are atomic enough for that."""

    def __init__(self) -> None:
        self.runs: dict[tuple[str, str], FakeRun] = {}
        self.faults = Faults()
        # False plays a ComfyUI build from before `/api/jobs` (404, as for any unknown route).
        self.comfyui_jobs_api = True
        self.requests: list[tuple[str, str, str]] = []  # (kind, method, path) for assertions
        self.record_requests = True
        # Secrets the fake accepts, per kind. Tests may change them (this server's copy).
        self.secrets: dict[str, dict[str, str]] = {kind: dict(secret) for kind, secret in DEFAULT_SECRETS.items()}
        # Default script for runs created by a submission (tests/demo may replace it).
        self.default_script: tuple[tuple[float, str], ...] = DEFAULT_SCRIPT
        # Node types this server does not have (custom nodes not installed): a prompt using one is refused
        # at submission, as ComfyUI does. The demo adds some.
        self.missing_node_types: set[str] = {"NoSuchNode"}
        # The error of a submitted run whose script fails (None: a CUDA out-of-memory on the KSampler).
        self.failure_error: dict[str, Any] | None = None

    def add_run(
        self,
        kind: str,
        external_id: str | None = None,
        *,
        script: tuple[tuple[float, str], ...] | list[tuple[float, str]] | None = None,
        n_outputs: int = 1,
        error: dict[str, Any] | None = None,
        workflow: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        created: float | None = None,
    ) -> FakeRun:
        run = FakeRun(
            kind=kind,
            external_id=external_id or str(uuid.uuid4()),
            script=tuple(script or self.default_script),
            n_outputs=n_outputs,
            error=error,
            workflow=workflow or {},
            inputs=inputs or {},
        )
        if created is not None:
            run.created = created
        run.number = len(self.runs)
        if run.error is None and FAILED in {p for _, p in run.script}:
            run.error = dict(self.failure_error) if self.failure_error else default_error()
        self.runs[(kind, run.external_id)] = run
        return run

    def get(self, kind: str, external_id: str) -> FakeRun | None:
        run = self.runs.get((kind, external_id))
        if run is not None and run.phase() == VANISHED:
            return None
        return run

    def of_kind(self, kind: str, now: float | None = None) -> list[FakeRun]:
        now = time.time() if now is None else now
        return [r for (k, _), r in self.runs.items() if k == kind and r.phase(now) != VANISHED]

    def restart(self, kind: str) -> int:
        """A provider process restarting: self-hosted ComfyUI keeps queue and history in memory only,
        so every run of `kind` is forgotten (in neither /queue nor /history). Returns how many."""
        forgotten = [key for key in self.runs if key[0] == kind]
        for key in forgotten:
            del self.runs[key]
        return len(forgotten)

    def reset(self) -> None:
        self.runs.clear()
        self.faults = Faults()
        self.comfyui_jobs_api = True
        self.requests.clear()
        self.default_script = DEFAULT_SCRIPT
        self.missing_node_types = {"NoSuchNode"}
        self.failure_error = None


def default_error() -> dict[str, Any]:
    return {
        "node_id": "3",
        "node_type": "KSampler",
        "exception_type": "RuntimeError",
        "exception_message": "CUDA out of memory. Tried to allocate 2.00 GiB",
        "traceback": [
            'File "execution.py", line 323, in execute\n',
            'File "nodes.py", line 1493, in sample\n',
            "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB\n",
        ],
    }


FAIL_SCRIPT: tuple[tuple[float, str], ...] = ((0.0, QUEUED), (0.5, RUNNING), (1.5, FAILED))


def script_for_workflow(workflow: Any, default: tuple[tuple[float, str], ...]) -> tuple[tuple[float, str], ...]:
    """Submitted workflows steer the fake: a node of class_type "FakeFail" makes the run fail
    (with a node error on that node); otherwise the server's default script applies."""
    if isinstance(workflow, dict):
        for node in workflow.values():
            if isinstance(node, dict) and node.get("class_type") == "FakeFail":
                return FAIL_SCRIPT
    return default
