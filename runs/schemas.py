"""The run's public JSON shape (docs/api.md), shared by the API and outbound webhooks."""

from __future__ import annotations

import functools
import json
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, NotRequired, TypedDict
from uuid import UUID

import orjson
from django.conf import settings
from django.db import connection
from django.db.models import QuerySet, TextField
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast
from pydantic import Field

from comfytrack.api_json import DictSchema, json_bytes

# Re-exported: the run JSON's datetime text, for the modules that write run JSON (webhooks, exports).
from comfytrack.api_json import datetime_text as datetime_text
from comfytrack.sql import column
from runs import run_reads
from runs.models import IN_FLIGHT, Run, RunEvent, RunOutput, RunQuerySet, Status, elapsed, queue_seconds
from runs.queries import cut_page, decode_cursor
from runs.times import time_source

# The run document and its parts are TypedDicts, not models: ninja still validates every answer against
# them and writes the same OpenAPI schema, but checks each run as a dict instead of building four model
# instances per run, which halves validating a page of 50 (bench/api_throughput.py, docs/benchmarks.md).


class ProviderRef(TypedDict):
    id: UUID
    name: str
    kind: str


class ErrorInfo(TypedDict):
    message: str
    node_id: NotRequired[str | None]
    node_type: NotRequired[str | None]
    exception_type: NotRequired[str | None]
    traceback: NotRequired[str | None]


class TimesSource(TypedDict):
    created: NotRequired[Annotated[str | None, Field(examples=["provider"])]]
    queued: NotRequired[Annotated[str | None, Field(examples=["provider"])]]
    started: NotRequired[Annotated[str | None, Field(examples=["observed"])]]
    finished: NotRequired[Annotated[str | None, Field(examples=["provider"])]]


class OutputOut(TypedDict):
    id: UUID
    kind: Annotated[str, Field(examples=["image"])]
    filename: Annotated[str, Field(examples=["ComfyUI_00001_.png"])]
    url: Annotated[
        str, Field(description="Download through comfytrack: the archived file, or the provider's link while valid.")
    ]
    archived: bool
    width: NotRequired[int | None]
    height: NotRequired[int | None]
    size_bytes: NotRequired[int | None]


class RunOut(TypedDict):
    id: UUID
    provider: ProviderRef
    external_id: Annotated[
        str, Field(description="The provider's id for the run (empty until the provider accepted it).")
    ]
    status: Annotated[str, Field(examples=["running"], description="pending, queued, running, succeeded, failed, …")]
    provider_status: str
    progress: NotRequired[float | None]
    live_status: str
    created: datetime
    queued: NotRequired[datetime | None]
    started: NotRequired[datetime | None]
    finished: NotRequired[datetime | None]
    times_source: Annotated[
        TimesSource,
        Field(
            description="Per time: `provider` (the provider's own clock) or `observed` (comfytrack's, approximate); "
            "null when the time is null."
        ),
    ]
    unseen_since: NotRequired[
        Annotated[datetime | None, Field(description="Since when the provider has not known this run.")]
    ]
    lost_at: NotRequired[
        Annotated[
            datetime | None,
            Field(description="When the run will be (in flight) or was (lost) marked lost for being unknown."),
        ]
    ]
    queue_seconds: NotRequired[float | None]
    run_seconds: NotRequired[float | None]
    error: NotRequired[ErrorInfo | None]
    outputs: list[OutputOut]
    origin: str
    retry_of: NotRequired[UUID | None]
    cost: NotRequired[
        Annotated[
            str | None,
            Field(
                examples=["0.012340"],
                description="What the run cost in USD (a decimal string), or null when unknown.",
            ),
        ]
    ]
    cost_source: NotRequired[
        Annotated[
            str | None,
            Field(
                examples=["reported"],
                description="`reported` (priced from the GPU time the provider reported), `estimated` (from the run "
                "time or a price per run), or null.",
            ),
        ]
    ]


class RunPage(DictSchema):
    """Built by `run_page` from run documents whose values already have their schema's types."""

    items: list[RunOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page; null on the last page.")


class EventOut(DictSchema):
    created: datetime
    source: str = Field(examples=["poll"])
    from_status: str
    to_status: str
    provider_status: str
    detail: str


USD_STEP = Decimal("0.000001")


def money(value: Decimal | None) -> str | None:
    """A USD amount as the API writes it: a decimal string (never a float), or None."""
    # Six decimals whatever the database summed them to (SQLite's sums carry their own scale).
    return None if value is None else f"{value.quantize(USD_STEP):f}"


def _optional_text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


# Exactly the columns a run's JSON shows, fetched as `.values()` rows: building model instances (a run,
# its provider, its retry_of and each output) would be most of a list page's CPU, and the heavy columns
# (workflow, inputs: hundreds of kB each) are never read.
RUN_FIELDS = (
    "pk", "code", "provider__code", "provider__name", "provider__kind", "external_id", "status", "provider_status",
    "progress", "live_status", "created", "queued", "started", "finished", "error_text", "origin", "retry_of__code",
    "created_source", "queued_source", "started_source", "finished_source", "unknown_since", "lost_at",
    "cost", "cost_source",
)  # fmt: skip
OUTPUT_FIELDS = ("run", "code", "kind", "filename", "archived", "width", "height", "size_bytes")
OUTPUT_ORDER = ("created", "id")  # oldest first, RunOutput's own ordering


def run_row_queryset() -> RunQuerySet:
    """All runs as `RUN_FIELDS` dicts, for `rows_json` (filter, paginate or slice it first)."""
    return _run_row_queryset().all()


@functools.cache
def _run_row_queryset() -> RunQuerySet:
    # Resolving the columns and their joins is a third of a small query's ORM cost, so it is done once
    # per process; callers only ever get clones (never evaluate this one: it would cache its rows).
    # The error document as its JSON text, decoded only when there is one (`_json_document`): most runs
    # have none, and decoding every row's would cost a tenth of a list request's CPU.
    runs = Run.objects.annotate(error_text=Cast("error", TextField()))
    if connection.vendor != "postgresql":
        return runs.values(*RUN_FIELDS)
    # PostgreSQL: each run's outputs ride along as one JSON array column, so a page is one query, not two.
    outputs = RawSQL(_outputs_array_sql(), ())  # noqa: S611 - model metadata only, no values
    return runs.annotate(outputs_json=outputs).values(*RUN_FIELDS, "outputs_json")


def _outputs_array_sql() -> str:
    meta = RunOutput._meta
    quote = connection.ops.quote_name
    pairs = ", ".join(f"'{name}', o.{column(RunOutput, name)}" for name in OUTPUT_FIELDS)
    order = ", ".join(f"o.{column(RunOutput, name)}" for name in OUTPUT_ORDER)
    # Only model metadata is formatted in; the run is the outer query's own row.
    return (
        f"SELECT coalesce(json_agg(json_build_object({pairs}) ORDER BY {order}), '[]'::json)::text "  # noqa: S608
        f"FROM {quote(meta.db_table)} AS o WHERE o.{column(RunOutput, 'run')} = "
        f"{quote(Run._meta.db_table)}.{column(Run, 'id')}"
    )


def rows_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The JSON of each `run_row_queryset` row, in order, with its outputs (in the row on PostgreSQL, else one
    query for all of them)."""
    if rows and "outputs_json" in rows[0]:
        return [row_json(row, [output_json(o) for o in orjson.loads(row["outputs_json"])]) for row in rows]
    outputs = _outputs_by_run([row["pk"] for row in rows])
    return [row_json(row, outputs.get(row["pk"], [])) for row in rows]


def first_row_json(rows: QuerySet) -> dict[str, Any] | None:
    """The JSON of the one run `rows` (from `run_row_queryset`) selects by code or pk, or None."""
    # No ORDER BY for a single row: compiling the default (created, code) ordering is a measurable
    # part of a detail request.
    found = list(rows.order_by()[:1])
    return rows_json(found)[0] if found else None


@functools.cache
def _outputs_sql() -> str | None:
    # Once per process: formatting it from metadata on every request cost a tenth of a list request.
    return _outputs_array_sql() if connection.vendor == "postgresql" else None


def find_run_json(organization_id: int, code: UUID) -> dict[str, Any] | None:
    """The JSON of the organization's run `code`, or None (SQL through the cursor: runs.run_reads)."""
    found = run_reads.run_rows(RUN_FIELDS, _outputs_sql(), organization_id, code)
    return rows_json(found)[0] if found else None


def organization_runs_page(organization_id: int, cursor: str | None, limit: int) -> tuple[list[dict], str | None]:
    """An organization's runs, newest first, as (run JSON list, next cursor): `paginate` over `run_row_queryset`
    without filters, as SQL through the cursor (runs.run_reads). Raises BadCursor."""
    position = decode_cursor(cursor) if cursor else ()
    rows = run_reads.newest_rows(RUN_FIELDS, _outputs_sql(), organization_id, position, limit + 1)
    page, next_cursor = cut_page(rows, limit)
    return rows_json(page), next_cursor


def run_page(items: list[dict[str, Any]], next_cursor: str | None) -> RunPage:
    """A page as the `RunPage` ninja answers with. ninja passes an instance of the response schema through
    to its dump without validating it again, and the page's run documents come from `row_json` (typed
    columns of our own database): validating 50 of them anew on every list request would be a tenth of
    its CPU. The list and the detail (which ninja does validate) must stay field for field the same
    (runs/tests/test_api_runs.py)."""
    return RunPage.model_construct(items=items, next_cursor=next_cursor)


def _outputs_by_run(run_pks: list[int]) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = {}
    if run_pks:
        outputs = RunOutput.objects.filter(run__in=run_pks).order_by(*OUTPUT_ORDER).values(*OUTPUT_FIELDS)
        for row in outputs:
            found.setdefault(row["run"], []).append(output_json(row))
    return found


def output_json(output: dict[str, Any]) -> dict[str, Any]:
    """One `OUTPUT_FIELDS` row as JSON, each value of its schema's type (a UUID, also from the JSON text
    that PostgreSQL's outputs column carries): a page goes to ninja as an already-built `RunPage`."""
    code = output["code"]
    return {
        "id": code if isinstance(code, UUID) else UUID(code),
        "kind": output["kind"],
        "filename": output["filename"],
        "url": f"{settings.COMFYTRACK_PUBLIC_URL}/api/v1/outputs/{output['code']}/file",
        "archived": output["archived"] is not None,
        "width": output["width"],
        "height": output["height"],
        "size_bytes": output["size_bytes"],
    }


def _json_document(text: str | None) -> Any:
    """A JSON column's text as Python. Most runs have no error (`{}`), so most rows skip decoding (a tenth
    of a list request's CPU if every row were decoded). The standard library, not
    orjson: a provider's integer beyond 64 bits must stay exact, not become a float."""
    if not text or text == "{}":
        return None
    return json.loads(text)


def error_json(error: dict[str, Any] | None) -> dict[str, Any] | None:
    if not error:
        return None
    return {
        "message": str(error.get("message") or ""),
        "node_id": _optional_text(error.get("node_id")),
        "node_type": _optional_text(error.get("node_type")),
        "exception_type": _optional_text(error.get("exception_type")),
        "traceback": _optional_text(error.get("traceback")),
    }


_UNSEEN_STATUSES = frozenset((*IN_FLIGHT, Status.LOST))


def unseen(status: str, unknown_since: datetime | None, lost_at: datetime | None) -> tuple[datetime | None, ...]:
    """(`unseen_since`, `lost_at`) of a run the provider stopped knowing (both None otherwise)."""
    if unknown_since is None or status not in _UNSEEN_STATUSES:
        return None, lost_at if status == Status.LOST else None
    return unknown_since, lost_at


def row_json(run: dict[str, Any], outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """One `run_row_queryset` row and its `output_json`s as the run's JSON (docs/api.md): the one
    implementation behind the API's list and detail and the outbound webhooks' payloads. A list page
    builds 50 of them, so each column is read once and no intermediate dict is built."""
    status, created, queued, started = run["status"], run["created"], run["queued"], run["started"]
    finished = run["finished"]
    unseen_since, lost_at = unseen(status, run["unknown_since"], run["lost_at"])
    return {
        "id": run["code"],
        "provider": {"id": run["provider__code"], "name": run["provider__name"], "kind": run["provider__kind"]},
        "external_id": run["external_id"],
        "status": status,
        "provider_status": run["provider_status"],
        "progress": run["progress"],
        "live_status": run["live_status"],
        "created": created,
        "queued": queued,
        "started": started,
        "finished": finished,
        "times_source": {
            "created": time_source(created, run["created_source"]),
            "queued": time_source(queued, run["queued_source"]),
            "started": time_source(started, run["started_source"]),
            "finished": time_source(finished, run["finished_source"]),
        },
        "unseen_since": unseen_since,
        "lost_at": lost_at,
        "queue_seconds": queue_seconds(created, queued, started),
        "run_seconds": elapsed(started, finished),
        "error": error_json(_json_document(run["error_text"])),
        "outputs": outputs,
        "origin": run["origin"],
        "retry_of": run["retry_of__code"],
        "cost": money(run["cost"]),
        "cost_source": run["cost_source"] or None,
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


def json_ready(data: Any) -> Any:
    """`data` as plain JSON values, written exactly as the API's renderer writes them: for JSON stored
    now and sent later (outbound webhook payloads), so it matches what the API answers."""
    return orjson.loads(json_bytes(data))
