"""Runs, their outputs and their status history, and the rules a status change follows.

The rules live here (`Status`, `TERMINAL`, `allowed_transition`, `Run.snapshot_fields`); the one code
path that applies them is `runs.applying` (`apply_snapshot`, `mark_status`, `apply_many`): a conditional
UPDATE on the status the caller read, so two workers never both apply a change, and a terminal status
never goes back, whatever a late or stale answer says.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import Organization
from providers.clients.base import IN_FLIGHT_STATUSES, TERMINAL_STATUSES, RunSnapshot
from providers.models import Credential, Provider
from runs.fingerprint import provider_graph, workflow_fingerprint
from runs.serving import inline_type
from runs.times import OBSERVED, TIME_FIELDS, TimeSource, merged_times, time_source
from runs.workflow import caption, search_text

if TYPE_CHECKING:
    from providers.clients.base import OutputRef


class Status(models.TextChoices):
    PENDING = "pending", "Pending"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    TIMED_OUT = "timed_out", "Timed out"
    LOST = "lost", "Lost"


# The statuses are the client contract's (`RunStatus` without UNKNOWN), which says which are final.
TERMINAL = tuple(status for status in Status if status in TERMINAL_STATUSES)
IN_FLIGHT = tuple(Status(status) for status in IN_FLIGHT_STATUSES)
# A run's bulky columns (the graph, its inputs, the search text built from them): lists, polls and the
# sweep never read them, so they leave them out (loaded on access if a rare path does).
HEAVY_FIELDS = ("workflow", "inputs", "search_text")
# What the sync sweep reads of a run it claims (`.only()`: anything else loads on first access).
SWEEP_FIELDS = (
    "id",
    "code",
    "organization",
    "provider",
    "credential",
    "external_id",
    "status",
    "provider_status",
    "progress",
    "live_status",
    "origin",
    "created",
    "queued",
    "started",
    "finished",
    "created_source",
    "queued_source",
    "started_source",
    "finished_source",
    "last_synced",
    "next_sync_after",
    "sync_locked_until",
    "sync_failures",
    "last_sync_error",
    "unknown_since",
    "lost_at",
    "n_outputs",
    "cancel_requested",
    "workflow_fingerprint",
    # A run that finishes is costed from its GPU and GPU time (runs.changes' finishing subscribers).
    "gpu",
    "gpu_seconds",
)
# A tracked run that ended on the provider in one of these has a graph there worth asking for (runs.graphs);
# a lost run is unknown to it, and a timed-out one is comfytrack's verdict, not the provider's.
GRAPH_STATUSES = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
# Ordering of non-terminal statuses: a stale answer must not move a run backwards.
_RANK = {Status.PENDING: 0, Status.QUEUED: 1, Status.RUNNING: 2}


class EventSource(models.TextChoices):
    POLL = "poll", "Poll"
    WEBHOOK = "webhook", "Webhook"
    API = "api", "API"
    ADMIN = "admin", "Admin"
    RECONCILER = "reconciler", "Reconciler"


class CostSource(models.TextChoices):
    REPORTED = "reported", "Priced from the usage the provider reported"
    ESTIMATED = "estimated", "Estimated from the run time or a price per run"


class Origin(models.TextChoices):
    TRACKED = "tracked", "Tracked (registered by id)"
    DASHBOARD = "dashboard", "Submitted from the dashboard"
    API = "api", "Submitted through the API"
    RETRY = "retry", "Retry"
    DEMO = "demo", "Demo"


def allowed_transition(old: str, new: str) -> bool:
    """Terminal statuses are final; in-flight statuses only move forward (or stay)."""
    if old in TERMINAL:
        return False
    if new in TERMINAL:
        return True
    return _RANK[Status(new)] >= _RANK[Status(old)]


def elapsed(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from start to end (never negative: provider clocks disagree), or None if either is missing."""
    if start and end:
        return max((end - start).total_seconds(), 0.0)
    return None


def queue_seconds(created: datetime, queued: datetime | None, started: datetime | None) -> float | None:
    """Time spent waiting: from the provider's queue time (else our creation time) to the start.

    Plain functions, so the API can compute them from `.values()` rows without model instances."""
    return elapsed(queued or created, started)


class RunQuerySet(models.QuerySet):
    def for_organization(self, organization: Organization | int) -> RunQuerySet:
        return self.filter(organization=organization)

    def in_flight(self) -> RunQuerySet:
        return self.filter(status__in=IN_FLIGHT)


class Run(models.Model):
    Status: TypeAlias = Status  # noqa: UP040 - also a value callers read (Run.Status.FAILED)

    code = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    # No single-column index where a composite one starts with the column (each index is written on
    # every status change; see Meta.indexes).
    organization = models.ForeignKey(Organization, models.CASCADE, related_name="runs", db_index=False)
    provider = models.ForeignKey(Provider, models.PROTECT, related_name="runs")
    credential = models.ForeignKey(Credential, models.SET_NULL, null=True, blank=True, related_name="runs")
    external_id = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    provider_status = models.CharField(max_length=100, blank=True)
    progress = models.FloatField(null=True, blank=True)
    live_status = models.CharField(max_length=300, blank=True)
    workflow = models.JSONField(default=dict, blank=True)
    inputs = models.JSONField(default=dict, blank=True)
    # {"message", "node_id", "node_type", "exception_type", "traceback"} or {} when none.
    error = models.JSONField(default=dict, blank=True)
    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.TRACKED)
    retry_of = models.ForeignKey("self", models.SET_NULL, null=True, blank=True, related_name="retries", db_index=False)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    created_by = models.ForeignKey(
        "auth.User", models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )

    created = models.DateTimeField(default=timezone.now, editable=False)
    queued = models.DateTimeField(null=True, blank=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    # Where each time came from (runs.times): the provider's own clock, or comfytrack's observation.
    created_source = models.CharField(max_length=8, choices=TimeSource.choices, default=OBSERVED, editable=False)
    queued_source = models.CharField(max_length=8, choices=TimeSource.choices, blank=True, editable=False)
    started_source = models.CharField(max_length=8, choices=TimeSource.choices, blank=True, editable=False)
    finished_source = models.CharField(max_length=8, choices=TimeSource.choices, blank=True, editable=False)

    # Sync engine bookkeeping (runs.sync).
    last_synced = models.DateTimeField(null=True, blank=True, editable=False)
    next_sync_after = models.DateTimeField(null=True, blank=True, default=timezone.now, editable=False)
    sync_locked_until = models.DateTimeField(null=True, blank=True, editable=False)
    sync_failures = models.PositiveIntegerField(default=0, editable=False)
    last_sync_error = models.TextField(blank=True, editable=False)
    # First time the provider said it did not know this run (the grace period for `lost` starts here).
    unknown_since = models.DateTimeField(null=True, blank=True, editable=False)
    # While unknown_since is set: when the run will be marked lost; for a lost run: when it was.
    lost_at = models.DateTimeField(null=True, blank=True, editable=False)
    n_outputs = models.PositiveIntegerField(default=0, editable=False)
    # Lower-cased external id, key input values and node types: what free-text search matches (runs.workflow).
    search_text = models.TextField(blank=True, editable=False)
    # The prompt a gallery tile shows under the run's outputs (runs.workflow.caption), worked out with the
    # search text when the workflow is written, so a page of tiles reads no graphs; "" when it has none.
    caption = models.CharField(max_length=500, blank=True, editable=False, default="", db_default="")
    # Set when comfytrack asked the provider to cancel: a run that then vanishes was cancelled, not lost.
    cancel_requested = models.DateTimeField(null=True, blank=True, editable=False)
    # The same workflow run again has the same value, whatever its seeds and prompts (runs.fingerprint);
    # "" while comfytrack does not know the run's workflow (tracked by id).
    workflow_fingerprint = models.CharField(max_length=16, blank=True, default="", editable=False)
    # Usage the provider reported (its GPU type; the GPU seconds it bills), and what the run cost in USD
    # (insights.costing: from the reported usage, else estimated from the run time or a price per run).
    gpu = models.CharField(max_length=40, blank=True, editable=False)
    gpu_seconds = models.FloatField(null=True, blank=True, editable=False)
    cost = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True, editable=False)
    cost_source = models.CharField(max_length=9, choices=CostSource.choices, blank=True, editable=False)
    # Where asking the provider for a finished tracked run's graph stands (runs.graphs, its own pass apart
    # from the status sweep): due at this moment (or held by a worker until then while it asks); None when
    # nothing is to be asked: the graph arrived, the provider has none or no call for it, or it gave up.
    graph_due = models.DateTimeField(null=True, blank=True, editable=False)
    graph_attempts = models.PositiveSmallIntegerField(default=0, editable=False)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-code"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "external_id"],
                condition=~Q(external_id=""),
                name="runs_run_unique_external_id",
            ),
            models.UniqueConstraint(
                fields=["organization", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="runs_run_unique_idempotency_key",
            ),
            models.CheckConstraint(
                condition=Q(finished__gte=F("started")) | Q(finished=None) | Q(started=None),
                name="runs_run_finished_after_started",
            ),
            models.CheckConstraint(
                condition=Q(progress__gte=0, progress__lte=1) | Q(progress=None),
                name="runs_run_progress_0_1",
            ),
        ]
        indexes = [
            # Used by runs.sync.claim_due_runs: only in-flight runs are in it, so it stays small.
            models.Index(
                fields=["next_sync_after"],
                name="runs_run_due",
                condition=Q(status__in=["pending", "queued", "running"]),
            ),
            # Used by runs.sync.reconcile_stale_submissions: submissions that never got a provider id.
            models.Index(
                fields=["created"], name="runs_run_unsubmitted", condition=Q(status="pending", external_id="")
            ),
            # The dashboard's and API's run lists (newest first, per organization, with filters).
            # Keyset pagination orders by (created, code): code, not id, because cursors leave the server.
            models.Index(fields=["organization", "-created", "-code"], name="runs_run_org_created"),
            models.Index(fields=["organization", "status", "-created", "-code"], name="runs_run_org_status"),
            models.Index(fields=["organization", "provider", "-created", "-code"], name="runs_run_org_provider"),
            # Not declared here: runs_run_org_stats, (organization, created) with the stats page's columns
            # included, on PostgreSQL only (migration 0018).
            # Used by insights.compare: one workflow's runs in a period; only runs with a known workflow.
            models.Index(
                fields=["organization", "workflow_fingerprint", "created"],
                name="runs_run_org_workflow",
                condition=~Q(workflow_fingerprint=""),
            ),
            # Used by runs.graphs.claim_due_graphs: only the finished tracked runs whose graph is still to ask for.
            models.Index(fields=["graph_due"], name="runs_run_graph_due", condition=Q(graph_due__isnull=False)),
            # Mostly empty columns: index only the rows that have a value (deletes and "retries of" need them).
            models.Index(fields=["retry_of"], name="runs_run_retry_of", condition=Q(retry_of__isnull=False)),
            models.Index(fields=["created_by"], name="runs_run_created_by", condition=Q(created_by__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.provider.name}:{self.external_id or self.code}"

    def save(self, *args, **kwargs) -> None:
        derived = {
            "search_text": search_text(self.external_id, self.workflow, self.inputs),
            "caption": caption(self.workflow, self.inputs),
            "workflow_fingerprint": workflow_fingerprint(self.workflow, self.inputs),
        }
        for name, value in derived.items():
            if value != getattr(self, name):
                setattr(self, name, value)
                if kwargs.get("update_fields") is not None:
                    kwargs["update_fields"] = {*kwargs["update_fields"], name}
        super().save(*args, **kwargs)

    def clean(self) -> None:
        """The provider, credential and original run all belong to the run's organization (forms call this)."""
        errors = {}
        credential = self.credential if self.credential_id else None
        original = self.retry_of if self.retry_of_id else None
        if self.organization_id and self.provider_id and self.provider.organization_id != self.organization_id:
            errors["provider"] = "This provider belongs to another organization."
        if self.provider_id and credential is not None and credential.provider_id != self.provider_id:
            errors["credential"] = "This credential belongs to another provider."
        if self.organization_id and original is not None and original.organization_id != self.organization_id:
            errors["retry_of"] = "The original run belongs to another organization."
        if errors:
            raise ValidationError(errors)

    # -- derived -----------------------------------------------------------------------------

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def queue_seconds(self) -> float | None:
        return queue_seconds(self.created, self.queued, self.started)

    @property
    def run_seconds(self) -> float | None:
        return elapsed(self.started, self.finished)

    def time_source(self, name: str) -> str | None:
        """'provider' or 'observed' for the time `name` (created, queued, started, finished); None if unset."""
        return time_source(getattr(self, name), getattr(self, f"{name}_source"))

    @property
    def approximate_times(self) -> dict[str, bool]:
        """Which times stand in for a provider time comfytrack does not have (pages mark them "≈").
        A submitted run's `created` is comfytrack's own record, exact; a tracked run's is not."""
        names = ("queued", "started", "finished") if self.origin != Origin.TRACKED else TIME_FIELDS
        return {name: self.time_source(name) == OBSERVED for name in names}

    @property
    def unseen_since(self) -> datetime | None:
        """Since when the provider has not known this run (in flight or lost), else None."""
        return self.unknown_since if self.status in (*IN_FLIGHT, Status.LOST) else None

    @classmethod
    def from_db(cls, db: str | None, field_names: Collection[str], values: Collection[Any], **kwargs: Any) -> Run:
        """Django's `from_db`, told the loaded columns as a set: it looks each of the model's fields up in
        `field_names` when some are deferred (`only()`, `defer()`), and in a list that is ~1,300 string
        comparisons per row for the sweep's 28 of 45 columns, several times the cost of the rest of the row."""
        if len(values) != len(cls._meta.concrete_fields):
            field_names = frozenset(field_names)
        return super().from_db(db, field_names, values, **kwargs)

    def snapshot_fields(self, snapshot: RunSnapshot, status: Status, now: datetime) -> dict:
        """The column values a snapshot implies for this run (times by the rules of runs.times)."""
        fields: dict = {
            "status": status,
            "provider_status": (snapshot.provider_status or "")[:100],
            "live_status": (snapshot.live_status or "")[:300],
        }
        if status == Status.LOST:
            # A lost run keeps the moment the provider stopped knowing it: its page says so.
            fields["lost_at"] = now
        else:
            fields["unknown_since"], fields["lost_at"] = None, None
        if snapshot.progress is not None:
            fields["progress"] = 1.0 if status == Status.SUCCEEDED else snapshot.progress
        elif status == Status.SUCCEEDED:
            fields["progress"] = 1.0
        # comfytrack never saw a lost run end: it gets no finish time (and so no run time) of ours.
        fields.update(
            merged_times(
                self,
                snapshot,
                now,
                running=status == Status.RUNNING,
                finished=status in TERMINAL and status != Status.LOST,
                tracked=self.origin == Origin.TRACKED,
            )
        )
        if self.wants_provider_graph:
            if snapshot.workflow is not None:
                fields.update(self.provider_graph_fields(snapshot.workflow))
            elif status in GRAPH_STATUSES and self.provider.client_class.fetches_workflows():
                # Its graph is asked for apart, after the status is applied (runs.graphs): due now.
                fields["graph_due"] = now
        if snapshot.gpu:
            fields["gpu"] = snapshot.gpu[:40]
        if snapshot.gpu_seconds is not None:
            fields["gpu_seconds"] = snapshot.gpu_seconds
        if snapshot.error:
            fields["error"] = {
                "message": snapshot.error.message,
                "node_id": snapshot.error.node_id,
                "node_type": snapshot.error.node_type,
                "exception_type": snapshot.error.exception_type,
                "traceback": snapshot.error.traceback,
            }
        return fields

    @property
    def wants_provider_graph(self) -> bool:
        """Registered by id and its workflow still unknown: the graph a provider reports for it is taken
        (once: then the run has a fingerprint). A submitted run keeps the workflow it was submitted with."""
        return self.origin == Origin.TRACKED and not self.workflow_fingerprint

    def provider_graph_fields(self, graph: Any) -> dict[str, Any]:
        """The workflow, its fingerprint and the search text a provider's graph gives this run ({} when the
        graph is not one comfytrack can read or store: runs.fingerprint.provider_graph)."""
        found = provider_graph(graph)
        if found is None:
            return {}
        workflow, fingerprint = found
        return {
            "workflow": workflow,
            "workflow_fingerprint": fingerprint,
            # A run registered by id has no inputs of ours: the graph is the whole of it.
            "search_text": search_text(self.external_id, workflow, {}),
            "caption": caption(workflow, {}),
            "graph_due": None,  # nothing left to ask for
        }

    def push_next_sync(self, delay: timedelta, now: datetime | None = None) -> None:
        self.next_sync_after = (now or timezone.now()) + delay
        Run.objects.filter(pk=self.pk).update(next_sync_after=self.next_sync_after)


class RunOutput(models.Model):
    class Kind(models.TextChoices):
        IMAGE = "image", "Image"
        VIDEO = "video", "Video"
        AUDIO = "audio", "Audio"
        MESH = "mesh", "3D mesh"
        TEXT = "text", "Text"
        FILE = "file", "File"

    code = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    run = models.ForeignKey(Run, models.CASCADE, related_name="outputs", db_index=False)  # see Meta.indexes
    # The run's organization, copied so the gallery (newest outputs of one organization) is a single
    # index range scan instead of a join over every output.
    organization = models.ForeignKey(Organization, models.CASCADE, related_name="+", editable=False, db_index=False)
    key = models.CharField(max_length=500, help_text="The provider's identity for this output.")
    node_id = models.CharField(max_length=100, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.FILE)
    filename = models.CharField(max_length=300)
    content_type = models.CharField(max_length=100, blank=True)
    # True once the archive checked the bytes and `content_type` is what they showed (runs.content);
    # before that, and for files archived before the check existed, the type is only the provider's say.
    content_verified = models.BooleanField(default=False, editable=False)
    provider_url = models.URLField(max_length=2000, blank=True)
    provider_url_expires = models.DateTimeField(null=True, blank=True)
    file = models.FileField(upload_to="outputs/%Y/%m/", max_length=300, blank=True)
    thumbnail = models.FileField(upload_to="thumbnails/%Y/%m/", max_length=300, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    archived = models.DateTimeField(null=True, blank=True)
    archive_error = models.TextField(blank=True)
    archive_attempts = models.PositiveIntegerField(default=0)
    next_archive_after = models.DateTimeField(null=True, blank=True, default=timezone.now)
    created = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["created", "id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "key"], name="runs_runoutput_unique_key"),
        ]
        indexes = [
            # Used by runs.archive: outputs still waiting to be archived.
            models.Index(fields=["next_archive_after"], name="runs_output_to_archive", condition=Q(archived=None)),
            models.Index(fields=["run", "created"], name="runs_output_run"),
            # The gallery: newest first per organization, keyset on (created, code).
            models.Index(fields=["organization", "-created", "-code"], name="runs_output_gallery"),
        ]

    def __str__(self) -> str:
        return self.filename

    def save(self, *args, **kwargs) -> None:
        if self.organization_id is None and self.run_id is not None:
            self.organization_id = Run.objects.filter(pk=self.run_id).values_list("organization_id", flat=True).get()
        super().save(*args, **kwargs)

    @staticmethod
    def fields_from_ref(ref: OutputRef) -> dict:
        return {
            "key": ref.key[:500],
            "node_id": (ref.node_id or "")[:100],
            "kind": ref.kind.value if ref.kind.value in _OUTPUT_KINDS else RunOutput.Kind.FILE,
            "filename": ref.filename[:300] or "output",
            "content_type": (ref.content_type or "")[:100],
            "provider_url": ref.url[:2000],
            "provider_url_expires": ref.url_expires,
            "width": ref.width,
            "height": ref.height,
            "size_bytes": ref.size_bytes,
        }

    def refresh_url(self, ref: OutputRef) -> None:
        self.provider_url = ref.url[:2000]
        self.provider_url_expires = ref.url_expires
        fields = ["provider_url", "provider_url_expires"]
        if self.archived is None:
            # A freshly signed link deserves a fresh try, even after the archive gave up on the old one.
            self.next_archive_after, self.archive_attempts = timezone.now(), 0
            fields += ["next_archive_after", "archive_attempts"]
        self.save(update_fields=fields)

    @property
    def is_archived(self) -> bool:
        return self.archived is not None

    @property
    def inline_kind(self) -> str:
        """ "image", "video" or "audio" when the archived file may be shown in the page, else ""."""
        shown = inline_type(self.content_type, self.content_verified) if self.file else None
        return shown.split("/", 1)[0] if shown else ""

    @property
    def provider_url_valid(self) -> bool:
        return bool(self.provider_url) and (
            self.provider_url_expires is None or self.provider_url_expires > timezone.now()
        )


# Kind.values builds a new list on every access; the sweep asks once per output.
_OUTPUT_KINDS = frozenset(RunOutput.Kind.values)


class RunEvent(models.Model):
    run = models.ForeignKey(Run, models.CASCADE, related_name="events", db_index=False)  # see Meta.indexes
    created = models.DateTimeField(default=timezone.now, editable=False)
    source = models.CharField(max_length=12, choices=EventSource.choices)
    from_status = models.CharField(max_length=10, choices=Status.choices, blank=True)
    to_status = models.CharField(max_length=10, choices=Status.choices)
    provider_status = models.CharField(max_length=100, blank=True)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["created", "id"]
        indexes = [models.Index(fields=["run", "created"], name="runs_event_run")]

    def __str__(self) -> str:
        return f"{self.from_status or '∅'} → {self.to_status} ({self.source})"


class LoopTurn(models.Model):
    """Which execution of a scheduled background loop is the current one (comfytrack.loops).

    django-q2 starts each loop every minute and a loop runs longer than that, so sweeping never pauses
    at a schedule boundary: a new execution takes the turn, and the one it replaces sees that and ends
    after its current pass. `beat` is refreshed every pass; a stale one means the holder died.
    """

    name = models.CharField(max_length=100, primary_key=True)
    holder = models.CharField(max_length=120)
    beat = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name}: {self.holder}"
