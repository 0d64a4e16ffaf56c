"""Runs, outputs, stats and the inbound provider webhook in the JSON API (thin: runs.* does the work)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.utils import timezone
from ninja import Field, Header, Query, Router, Schema, Status
from pydantic import ValidationError as PydanticValidationError
from pydantic import field_validator, model_validator
from pydantic_core import PydanticCustomError

from accounts.api_auth import caller
from comfytrack import untrusted_json
from comfytrack.api_errors import ApiError, ErrorOut, describe_validation_errors, errors, invalid, not_found
from comfytrack.api_json import DictSchema
from providers.clients.base import SubmissionRejected
from providers.models import Provider
from runs import export, serving
from runs.actions import ActionError, cancel_run, retry_run, sync_run_now
from runs.fingerprint import provider_graph
from runs.inbound_hooks import handle_comfydeploy_hook
from runs.models import Origin, Run, RunOutput
from runs.queries import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    BadCursor,
    filter_runs,
    paginate,
    parse_filters,
    provider_by_code_or_name,
)
from runs.schemas import (
    EventOut,
    OutputOut,
    RunOut,
    RunPage,
    event_json,
    find_run_json,
    first_row_json,
    money,
    organization_runs_page,
    rows_json,
    run_page,
    run_row_queryset,
)
from runs.stats import MAX_WINDOW_DAYS, ProviderStats, compute_stats, window_from_days
from runs.submission import submit_run
from runs.tracking import MAX_EXTERNAL_ID, MAX_TRACK_IDS, external_id_problem, track_run, track_runs

router = Router(tags=["runs"])

FILTER_FIELDS = ("status", "provider", "origin", "created_after", "created_before")
NO_SUCH_RUN = "No such run in this organization."


def _no_nul(value: Any, path: str = "") -> Any:
    """PostgreSQL can store no NUL character in text or jsonb: refuse it as bad input, not a 500."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if isinstance(value, dict):
        for key, item in value.items():
            _no_nul(key)
            _no_nul(item)
    elif isinstance(value, list):
        for item in value:
            _no_nul(item)
    return value


class SubmitIn(Schema):
    provider: str = Field(description="The provider's id or its name.", examples=["Deploy"], max_length=200)
    workflow: dict[str, Any] = Field(description="ComfyUI API-format workflow (node id → node).")
    inputs: dict[str, Any] | None = Field(None, description='Input values, e.g. {"6.text": "a cat"}.')

    _clean = field_validator("provider", "workflow", "inputs")(_no_nul)

    @field_validator("workflow")
    @classmethod
    def _workflow_not_empty(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("must be a non-empty ComfyUI workflow object")
        return value


class TrackIn(Schema):
    provider: str = Field(description="The provider's id or its name.", max_length=200)
    external_id: str | None = Field(
        None, description="The provider's id for the run.", min_length=1, max_length=MAX_EXTERNAL_ID
    )
    external_ids: list[str] | None = Field(
        None,
        description=f"Instead of `external_id`: up to {MAX_TRACK_IDS} ids, registered in one call.",
        max_length=MAX_TRACK_IDS,
    )
    workflow: dict[str, Any] | None = Field(
        None,
        description="The API-format graph the run (or every run of `external_ids`) ran, if you know it: the runs "
        "this call registers get their workflow fingerprint at once. Without it, the fingerprint comes from the "
        "provider where it reports the graph. A run already tracked keeps what it has.",
    )

    _clean = field_validator("provider", "external_id", "workflow")(_no_nul)

    @field_validator("workflow")
    @classmethod
    def _api_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and provider_graph(value) is None:
            raise ValueError("must be a ComfyUI workflow in API format (node id → {class_type, inputs}), under 1 MB")
        return value

    @field_validator("external_id")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        if value is not None and (problem := external_id_problem(value.strip())):
            raise ValueError(problem)  # as each id of external_ids is refused
        return value.strip() if value is not None else None

    @field_validator("external_ids")
    @classmethod
    def _not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("must list at least one id")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> TrackIn:
        if (self.external_id is None) == (self.external_ids is None):
            raise PydanticCustomError("one_of", "send either external_id or external_ids")
        return self


class TrackItemOut(DictSchema):
    external_id: str
    id: UUID | None = Field(description="The run (new or already tracked); null when the id was refused.")
    created: bool
    error: str | None = Field(description="Why this id was refused, else null.")


class TrackManyOut(DictSchema):
    items: list[TrackItemOut] = Field(description="One result per id sent, in the same order.")


class RetryIn(Schema):
    provider: str | None = Field(None, description="Retry on another provider (id or name); default: the same.")

    _clean = field_validator("provider")(_no_nul)


class FilterQuery(Schema):
    status: str | None = Field(
        None, description="One or more statuses, comma-separated; `problems` = failed+timed_out+lost."
    )
    provider: str | None = Field(None, description="Provider id or name (comma-separated for several).")
    origin: str | None = None
    q: str | None = Field(None, description="Free text: external id, prompt text, node types.")
    created_after: str | None = Field(None, description="A date (2026-11-30) or an ISO datetime.")
    created_before: str | None = None


class ListQuery(FilterQuery):
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, description="The previous page's next_cursor.")


# -- lookups ---------------------------------------------------------------------------------------


def _org(request: HttpRequest) -> int:
    """The caller's organization, as the id every scoped query filters by (no row load)."""
    return caller(request).organization_id


def _scoped_runs(request: HttpRequest):
    return Run.objects.for_organization(_org(request))


def get_run(request: HttpRequest, run_id: UUID) -> Run:
    run = _scoped_runs(request).filter(code=run_id).first()
    if run is None:
        raise not_found(NO_SUCH_RUN)
    return run


def get_run_json(request: HttpRequest, run_id: UUID) -> dict[str, Any]:
    """The run's JSON straight from the database (no model instance), or 404."""
    data = find_run_json(_org(request), run_id)
    if data is None:
        raise not_found(NO_SUCH_RUN)
    return data


def find_provider(request: HttpRequest, value: str, field: str = "provider") -> Provider:
    value = value.strip()
    match = provider_by_code_or_name(Provider.objects.filter(organization=_org(request)), value)
    if match is None:
        raise ApiError(404, f"No provider {value[:100]!r} in this organization.", "not_found", field=field)
    if not match.is_active:
        raise ApiError(409, f"Provider {match.name!r} is disabled.", "conflict", field=field)
    return match


def _reread_run_json(run: Run) -> dict[str, Any]:
    found = first_row_json(run_row_queryset().filter(pk=run.pk))
    if found is None:  # deleted since this request read or wrote it
        raise not_found("No such run in this organization.")
    return found


def _clean_params(request: HttpRequest) -> dict[str, list[str]]:
    params = {k: [v.replace("\x00", "") for v in request.GET.getlist(k)] for k in (*FILTER_FIELDS, "q")}
    return {k: v for k, v in params.items() if v}


class _Params(dict):
    def getlist(self, key):
        return self.get(key) or []

    def get(self, key, default=None):
        value = super().get(key, default)
        if isinstance(value, list) and key in ("q", "created_after", "created_before"):
            return value[0] if value else default
        return value


# -- runs ------------------------------------------------------------------------------------------


@router.get("/runs", response={200: RunPage, **errors()}, summary="List runs (newest first)")
def list_runs(request: HttpRequest, query: Query[ListQuery]):
    """Runs of the key's organization, newest first, with filters and stable cursor pagination
    (new runs arriving between pages never cause duplicates or gaps)."""
    params = _clean_params(request)
    try:
        if not params:  # the common call, "what is new"
            return run_page(*organization_runs_page(_org(request), query.cursor, query.limit))
        filters = parse_filters(_Params(params), _org(request))
        if filters.errors:
            raise invalid(" ".join(map(str, filters.errors)), filters.errors[0].field)
        queryset = filter_runs(run_row_queryset().for_organization(_org(request)), filters)
        page, next_cursor = paginate(queryset, query.cursor, query.limit)
    except BadCursor as exc:
        raise invalid(str(exc), "cursor") from None
    return run_page(rows_json(page), next_cursor)


class ExportQuery(FilterQuery):
    format: Literal["csv", "jsonl"] = Field("csv", description="csv (with a header row) or jsonl (one object a line).")


EXPORT_RESPONSES = {
    200: {
        "description": "Every run matching the filters, newest first, streamed (columns in docs/api.md).",
        "content": {"text/csv": {"schema": {"type": "string"}}, "application/x-ndjson": {"schema": {"type": "string"}}},
    }
}


@router.get(
    "/runs/export",
    response={**errors()},
    summary="Export runs (CSV or JSON Lines)",
    openapi_extra={"responses": EXPORT_RESPONSES},
)
def export_runs(request: HttpRequest, query: Query[ExportQuery]) -> HttpResponse:
    """The list's filters (`status`, `provider`, `origin`, `q`, `created_after`, `created_before`) without
    pagination: every matching run, streamed as it is read. CSV cells that a spreadsheet would take for
    a formula (starting with = + - @) get a leading apostrophe."""
    filters = parse_filters(_Params(_clean_params(request)), _org(request))
    if filters.errors:
        raise invalid(" ".join(map(str, filters.errors)), filters.errors[0].field)
    runs = filter_runs(_scoped_runs(request), filters)
    return export.streamed(runs, _org(request), query.format, timezone.now())


@router.post("/runs", response={201: RunOut, 200: RunOut, **errors(403, 404, 409)}, summary="Submit a run")
def submit(
    request: HttpRequest,
    payload: SubmitIn,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=200),
):
    """Submit a workflow to a provider. 201 with the new run (`pending` until the provider accepts it,
    `failed` with the provider's message if it failed to answer). A workflow the provider refuses at
    validation (or inputs naming nodes not in the workflow) is a 422 naming the nodes and inputs at
    fault, and no run is recorded. With an `Idempotency-Key` header, repeating the request returns the
    same run (200) instead of submitting again; the same key with a different body is a 422."""
    provider = find_provider(request, payload.provider)
    key = (idempotency_key or "").replace("\x00", "").strip() or None
    existing = key and Run.objects.filter(organization=_org(request), idempotency_key=key).first()
    if existing:
        return Status(200, _reread_run_json(_same_request(existing, provider, payload)))
    try:
        run = submit_run(
            provider,
            payload.workflow,
            payload.inputs or {},
            origin=Origin.API,
            created_by=caller(request).user,
            idempotency_key=key,
        )
    except SubmissionRejected as exc:
        raise rejected(exc) from None
    if key:
        _same_request(run, provider, payload)  # the same key may have raced in with another body
    return Status(201, _reread_run_json(run))


def _same_request(run: Run, provider: Provider, payload: SubmitIn) -> Run:
    """The run an Idempotency-Key named, if it was made by the same request; else a 422 saying so."""
    if run.provider_id != provider.pk or run.workflow != payload.workflow or run.inputs != (payload.inputs or {}):
        raise ApiError(
            422,
            "This Idempotency-Key was already used with a different request body (provider, workflow or inputs); "
            "use a new key for a different submission.",
            "idempotency_key_reused",
            field="Idempotency-Key",
        )
    return run


def rejected(exc: SubmissionRejected) -> ApiError:
    """A refused submission as a 422: `field` is the first node/input at fault, `errors` lists them all."""
    errors = [{"field": p.field, "detail": p.message} for p in exc.problems]
    return ApiError(422, exc.message, "rejected", field=exc.problems[0].field, errors=errors)


@router.post(
    "/runs/track",
    response={201: RunOut, 200: RunOut | TrackManyOut, **errors(403, 404, 409)},
    summary="Track a run, or many",
)
def track(request: HttpRequest, payload: TrackIn):
    """Register runs that already exist on a provider. Idempotent.

    With `external_id`: 201 and the run when newly registered, 200 and the same run when it is already
    tracked. With `external_ids` (up to 1,000): always 200 and `{items: [...]}`, one result per id in
    the order sent, each with the run's id and `created`, or an `error` for an id that cannot be a run
    id (the other ids are still registered)."""
    provider = find_provider(request, payload.provider)
    user = caller(request).user
    if payload.external_ids is not None:
        results = track_runs(provider, payload.external_ids, created_by=user, workflow=payload.workflow)
        items = [
            {"external_id": r.external_id, "id": r.run_code, "created": r.created, "error": r.error} for r in results
        ]
        return {"items": items}
    assert payload.external_id is not None  # TrackIn takes external_id or external_ids
    run, created = track_run(provider, payload.external_id, created_by=user, workflow=payload.workflow)
    return Status(201 if created else 200, _reread_run_json(run))


@router.get("/runs/{run_id}", response={200: RunOut, **errors(404)}, summary="Get a run")
def get_run_detail(request: HttpRequest, run_id: UUID):
    return get_run_json(request, run_id)


def _act(action, *args, **kwargs) -> Run:
    try:
        return action(*args, **kwargs)
    except ActionError as exc:
        code = {404: "not_found", 409: "conflict", 422: "rejected", 502: "provider_error"}.get(exc.status, "error")
        raise ApiError(exc.status, exc.message, code) from None


@router.post("/runs/{run_id}/cancel", response={200: RunOut, **errors(403, 404, 409, 502)}, summary="Cancel")
def cancel(request: HttpRequest, run_id: UUID):
    """Ask the provider to cancel the run; answers with the run as the provider then reports it."""
    return _reread_run_json(_act(cancel_run, get_run(request, run_id)))


RETRY_BODY = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": RetryIn.model_json_schema()}},
    }
}


def _optional_body[S: Schema](request: HttpRequest, schema: type[S]) -> S:
    """An optional JSON body: none at all means the defaults (form fields are accepted too)."""
    raw = request.body.strip()
    content_type = request.content_type or ""
    is_json = content_type in ("application/json", "") or content_type.endswith("+json")
    # `curl -d '{…}'` without a Content-Type header labels JSON as a form: a body that is a JSON object
    # is read as one, rather than silently ignored as a form with one odd field.
    is_json = is_json or raw.startswith(b"{")
    try:
        if not is_json:
            return schema.model_validate(request.POST.dict())
        return schema.model_validate(untrusted_json.loads_object(raw)) if raw else schema()
    except untrusted_json.UnsafeJSON as exc:  # not an object, too deep, NaN, NUL, …: as the API's parser says
        raise invalid(f"The request body {exc}.", exc.path[0] if exc.path else "body") from None
    except PydanticValidationError as exc:
        detail, field = describe_validation_errors(exc.errors())
        raise invalid(detail, field) from None
    except ValueError:  # json's JSONDecodeError, or bytes that are not UTF-8
        raise invalid("The request body is not valid JSON.", "body") from None


@router.post(
    "/runs/{run_id}/retry",
    response={201: RunOut, **errors(403, 404, 409)},
    summary="Retry",
    openapi_extra=RETRY_BODY,
)
def retry(request: HttpRequest, run_id: UUID):
    """Submit the same workflow and inputs again (optionally `{"provider": …}` another one); the new run
    has `retry_of` set and the original is left as it was. The body is optional."""
    run = get_run(request, run_id)
    payload = _optional_body(request, RetryIn)
    provider = find_provider(request, payload.provider) if payload.provider else None
    new = _act(retry_run, run, provider=provider, created_by=caller(request).user)
    return Status(201, _reread_run_json(new))


@router.post("/runs/{run_id}/sync", response={200: RunOut, **errors(403, 404, 502)}, summary="Sync now")
def sync_now(request: HttpRequest, run_id: UUID):
    """Ask the provider about the run right away (instead of waiting for the next sweep). 502 with the
    reason when the provider could not answer (unreachable, an error status, a body it could not read)."""
    return _reread_run_json(_act(sync_run_now, get_run(request, run_id)))


@router.get("/runs/{run_id}/outputs", response={200: list[OutputOut], **errors(404)}, summary="A run's outputs")
def outputs(request: HttpRequest, run_id: UUID):
    return get_run_json(request, run_id)["outputs"]


@router.get("/runs/{run_id}/events", response={200: list[EventOut], **errors(404)}, summary="Status history")
def events(request: HttpRequest, run_id: UUID):
    """Every status change of the run, oldest first, with where it came from (poll, webhook, api, …)."""
    run = get_run(request, run_id)
    return [event_json(e) for e in run.events.order_by("created", "id")]


# -- output files ----------------------------------------------------------------------------------

FILE_RESPONSES = {
    200: {
        "description": "The archived file.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
    302: {"description": "Not archived yet: a redirect to the provider's link while it is valid."},
}


@router.get(
    "/outputs/{output_id}/file",
    response={**errors(404, 410)},
    summary="Download an output",
    openapi_extra={"responses": FILE_RESPONSES},
)
def output_file(request: HttpRequest, output_id: UUID) -> HttpResponseBase:
    """The archived file, streamed with its content type. Before it is archived: a 302 to the provider's
    link while that link is valid; 410 once it has expired."""
    output = RunOutput.objects.filter(code=output_id, organization=_org(request)).first()
    if output is None:
        raise not_found("No such output in this organization.")
    if output.file:
        return _stream(output)
    if output.provider_url_valid and output.provider_url.lower().startswith(("https://", "http://")):
        return HttpResponseRedirect(output.provider_url)
    if output.provider_url:
        raise ApiError(410, "The provider's link has expired and the file was not archived.", "gone")
    raise not_found("This output has no file yet.")


def _stream(output: RunOutput) -> FileResponse:
    try:
        handle = output.file.open("rb")
    except (FileNotFoundError, OSError):
        raise ApiError(410, "The archived file is missing from storage.", "gone") from None
    response = FileResponse(handle)
    # The same rule as the dashboard's: only verified images, video and audio inline (runs.serving).
    for header, value in serving.headers(serving.for_output(output)).items():
        response[header] = value
    return response


# -- stats -----------------------------------------------------------------------------------------


class ProviderStatsOut(Schema):
    id: UUID
    name: str
    kind: str
    total: int
    succeeded: int
    finished: int
    success_rate: float | None
    queue_p50: float | None
    queue_p95: float | None
    run_p50: float | None
    run_p95: float | None
    costed_runs: int = Field(description="Runs with a cost (reported or estimated).")
    cost_total: str | None = Field(description="USD over the costed runs (a decimal string), or null.")


class DayOut(Schema):
    day: date
    by_status: dict[str, int]


class CostDayOut(Schema):
    day: date
    by_provider: dict[str, str] = Field(description="Provider name → USD spent on runs created that day.")


class FailureOut(Schema):
    message: str
    count: int


class StatsOut(Schema):
    since: datetime
    until: datetime
    total: int
    finished: int
    success_rate: float | None = Field(description="succeeded / finished runs in the window (0..1).")
    by_status: dict[str, int]
    providers: list[ProviderStatsOut]
    per_day: list[DayOut]
    top_failures: list[FailureOut]
    cost_total: str | None = Field(description="USD over the window's costed runs, or null when none has a cost.")
    cost_per_day: list[CostDayOut]


@router.get("/stats", response={200: StatsOut, **errors()}, summary="Statistics over a window")
def stats(request: HttpRequest, days: int = Query(7, ge=1, le=MAX_WINDOW_DAYS)):
    """Counts by status and provider, success rate, and p50/p95 queue and run seconds for runs created
    in the last `days` days."""
    result = compute_stats(_scoped_runs(request), window_from_days(days), timezone.now())
    return {
        "since": result.since,
        "until": result.until,
        "total": result.total,
        "finished": result.finished,
        "success_rate": result.success_rate,
        "by_status": result.by_status,
        "providers": [provider_stats_json(p) for p in result.providers],
        "per_day": [{"day": day, "by_status": counts} for day, counts in result.per_day],
        "top_failures": [{"message": m, "count": n} for m, n in result.top_failures],
        "cost_total": money(result.cost_total),
        "cost_per_day": [
            {"day": day, "by_provider": {name: money(total) for name, total in costs.items()}}
            for day, costs in result.cost_per_day
        ],
    }


def provider_stats_json(p: ProviderStats) -> dict[str, Any]:
    plain = ("name", "kind", "total", "succeeded", "finished", "success_rate", "queue_p50", "queue_p95", "run_p50")
    return {
        **{k: getattr(p, k) for k in (*plain, "run_p95")},
        "id": p.code,
        "costed_runs": p.costed,
        "cost_total": money(p.cost_total),
    }


# -- inbound provider webhooks (their own auth: the per-provider token in the path) ---------------


class HookOut(Schema):
    ok: bool
    run: UUID | None


@router.post(
    "/hooks/comfydeploy/{provider_id}/{token}",
    auth=None,
    throttle=[],
    response={200: HookOut, 400: ErrorOut, 404: ErrorOut, 413: ErrorOut, 422: ErrorOut, 503: ErrorOut},
    tags=["inbound webhooks"],
    summary="ComfyDeploy webhook",
    url_name="hook-comfydeploy",
)
def comfydeploy_hook(request: HttpRequest, provider_id: UUID, token: str):
    """Where ComfyDeploy posts run updates. Authenticated by the provider's webhook token in the path
    (not an API key); 404 for an unknown provider or a bad token alike."""
    status, body = handle_comfydeploy_hook(request, provider_id, token)
    return Status(status, body)
