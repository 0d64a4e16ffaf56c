"""Dashboard pages for runs: list (filters, search, cursor, live rows), detail with actions,
gallery with lightbox, submit, stats, and archived output files served to members only.

Function views behind `accounts.access.org_required`; every lookup is scoped
to the current organization, so another organization's run or output is a 404.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib import messages
from django.db.models import F
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.access import Access, org_required
from comfytrack import untrusted_json
from providers.clients.base import SubmissionRejected
from providers.models import Provider
from runs import live, presenters, serving
from runs import workflow as wf
from runs.actions import ActionError, cancel_run, retry_archiving, retry_run, sync_run_now
from runs.charts import runs_per_day_svg
from runs.models import HEAVY_FIELDS, IN_FLIGHT, EventSource, Origin, Run, RunOutput, Status
from runs.queries import (
    encode_cursor,
    filter_runs,
    newest_first,
    paginate_or_restart,
    parse_filters,
    parse_limit,
)
from runs.stats import compute_stats, window_from_days
from runs.submission import submit_run

PAGE_SIZE = 50
GALLERY_PAGE_SIZE = 60
MAX_WORKFLOW_BYTES = 1_000_000
QUICK_FILTERS = [("All", ""), ("In flight", ",".join(IN_FLIGHT)), ("Failed", "problems")]


def poll_seconds() -> int:
    return settings.COMFYTRACK_POLL_SECONDS


def _get_run(access: Access, code: uuid.UUID) -> Run:
    """The run if it belongs to the current organization, else 404."""
    return get_object_or_404(Run.objects.select_related("provider"), organization=access.organization, code=code)


def _providers(access: Access):
    return Provider.objects.filter(organization=access.organization).order_by("name")


# -- runs list ---------------------------------------------------------------------------------------


@org_required
def run_list(request, access: Access):
    filters = parse_filters(request.GET, access.organization)
    errors = [str(e) for e in filters.errors]
    try:
        limit = parse_limit(request.GET.get("limit"), PAGE_SIZE)
    except ValueError as exc:
        errors.append(str(exc))
        limit = PAGE_SIZE
    organization_runs = Run.objects.filter(organization=access.organization).defer(*HEAVY_FIELDS)
    matching = filter_runs(organization_runs, filters)
    cursor = request.GET.get("cursor")
    runs, next_cursor = paginate_or_restart(matching.select_related("provider"), cursor, limit, errors)
    cursor_ok = bool(cursor) and not any("cursor" in e for e in errors)
    # Where the live list starts looking for new runs: the newest one shown, or on a later page the
    # newest there is now (the page counts what arrives after it).
    newest = newest_first(matching).only("created", "code").first() if cursor_ok else (runs[0] if runs else None)
    first_page = not cursor_ok
    context = {
        "runs": runs,
        "rows": presenters.run_rows(runs),
        "poll_seconds": poll_seconds(),
        "first_page": first_page,
        "since": encode_cursor(newest) if newest else "",
        "live": _may_change(runs, filters),
        "live_query": live.live_query(request.GET, first_page=first_page),
        "filter_query": live.live_query(request.GET, first_page=True),
        "access": access,
        "next_cursor": next_cursor,
        "filters": filters,
        "errors": errors,
        "providers": _providers(access),
        "statuses": Status.choices,
        "origins": Origin.choices,
        "quick_filters": QUICK_FILTERS,
        "status_param": ",".join(request.GET.getlist("status")),
    }
    return render(request, "runs/run_list.html", context)


def _may_change(runs: list[Run], filters) -> bool:
    """Whether polling can show anything: a row is unfinished, or new runs can still match the filters
    (not when the date range ended in the past)."""
    ended = filters.created_before is not None and filters.created_before < timezone.now()
    return any(not run.is_finished for run in runs) or not ended


@org_required
def run_rows(request, access: Access):
    """One poll of the live list (runs/live.py): the unfinished rows shown, refreshed in place, and the
    matching runs newer than `since`, added at the top (first page) or counted (later pages)."""
    update = live.poll(request.GET, access.organization)
    context = {
        "update": update,
        "refreshed": presenters.run_rows(update.refreshed),
        "inserted": presenters.run_rows(update.inserted),
        "filter_query": live.live_query(request.GET, first_page=True),
    }
    return render(request, "runs/run_list.html#live-update", context)


# -- run detail and actions ----------------------------------------------------------------------------


@org_required
def run_detail(request, access: Access, code: uuid.UUID):
    run = _get_run(access, code)
    context = {
        "access": access,
        "run": run,
        # The workflow as it ran: the node table and the summary both show the inputs' overrides.
        "nodes": wf.nodes(wf.effective(run.workflow, run.inputs, run.provider.client_class)),
        "key_values": wf.key_values(run.workflow, run.inputs),
        "events": run.events.all(),
        "outputs": (outputs := list(run.outputs.all())),
        # The archive stopped trying (after its bounded retries): a member may start it again.
        "archive_stopped": any(o.archived is None and o.next_archive_after is None and o.provider_url for o in outputs),
        "retries": run.retries.only("code", "status", "created"),
        "providers": _providers(access).filter(is_active=True),
        "can_cancel": not run.is_finished and (not run.external_id or run.provider.client_class.supports_cancel),
        "poll_seconds": poll_seconds(),
    }
    return render(request, "runs/run_detail.html", context)


@org_required
def run_live(request, access: Access, code: uuid.UUID):
    """The live part of the detail page; a run that just finished reloads the page (events, outputs)."""
    run = _get_run(access, code)
    if run.is_finished and request.GET.get("was") != run.status:
        response = HttpResponse(status=204)
        response["HX-Refresh"] = "true"
        return response
    return render(request, "runs/run_detail.html#run-live", {"run": run, "poll_seconds": poll_seconds()})


def _action(request, access: Access, code: uuid.UUID, do, done: str):
    run = _get_run(access, code)
    try:
        result = do(run)
    except ActionError as exc:
        messages.error(request, exc.message)
        return redirect("run-detail", code=run.code)
    messages.success(request, done)
    return redirect("run-detail", code=result.code)


@org_required(write=True)
@require_POST
def run_cancel(request, access: Access, code: uuid.UUID):
    return _action(request, access, code, lambda run: cancel_run(run, source=EventSource.API), "Cancel requested.")


@org_required(write=True)
@require_POST
def run_sync(request, access: Access, code: uuid.UUID):
    run = _get_run(access, code)
    try:
        run = sync_run_now(run)
    except ActionError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Synced with {run.provider.name}: the run is {run.get_status_display().lower()}.")
    return redirect("run-detail", code=run.code)


@org_required(write=True)
@require_POST
def run_archive_retry(request, access: Access, code: uuid.UUID):
    return _action(request, access, code, retry_archiving, "Archiving again: the outputs are due now.")


@org_required(write=True)
@require_POST
def run_retry(request, access: Access, code: uuid.UUID):
    provider = None
    if request.POST.get("provider"):
        try:
            provider = _providers(access).filter(code=uuid.UUID(request.POST["provider"])).first()
        except ValueError:
            provider = None
        if provider is None:
            raise Http404("No such provider.")
    return _action(
        request,
        access,
        code,
        lambda run: retry_run(run, provider=provider, created_by=request.user),
        "Retry submitted: this is the new run.",
    )


# -- gallery and output files --------------------------------------------------------------------------


@org_required
def gallery(request, access: Access):
    filters = parse_filters(request.GET, access.organization)
    errors = [str(e) for e in filters.errors]
    outputs = filter_runs(RunOutput.objects.filter(organization=access.organization), filters, through="run__")
    kind = request.GET.get("kind", "")
    if kind:
        if kind in RunOutput.Kind.values:
            outputs = outputs.filter(kind=kind)
        else:
            errors.append(f"Unknown kind {kind!r} (use {', '.join(RunOutput.Kind.values)}).")
    # A tile shows its run's provider and prompt: two of the run's columns, not the run as a model
    # instance of some 45 (and its provider's) per tile, nor its graph.
    outputs = outputs.annotate(run_provider_id=F("run__provider_id"), run_caption=F("run__caption"))
    page, next_cursor = paginate_or_restart(outputs, request.GET.get("cursor"), GALLERY_PAGE_SIZE, errors)
    providers = list(_providers(access))
    provider_names = {p.pk: p.name for p in providers}
    if missing := {output.run_provider_id for output in page} - provider_names.keys():
        # Only if a run's provider is not its organization's (the models keep them together).
        provider_names.update(Provider.objects.filter(pk__in=missing).values_list("pk", "name"))
    context = {
        "access": access,
        "outputs": page,
        "tiles": presenters.gallery_tiles(page, provider_names),
        "next_cursor": next_cursor,
        "filters": filters,
        "kind": kind,
        "kinds": RunOutput.Kind.choices,
        "statuses": Status.choices,
        "errors": errors,
        "providers": providers,
    }
    return render(request, "runs/gallery.html", context)


def _get_output(access: Access, code: uuid.UUID, *, with_run: bool = False) -> RunOutput:
    # By the output's own (copied) organization: files and thumbnails need nothing of the run.
    outputs = RunOutput.objects.select_related("run__provider") if with_run else RunOutput.objects
    return get_object_or_404(outputs, organization=access.organization, code=code)


@org_required
def output_lightbox(request, access: Access, code: uuid.UUID):
    output = _get_output(access, code, with_run=True)
    context = {"output": output, "headline": wf.headline(output.run.workflow, output.run.inputs)}
    template = "runs/gallery.html#lightbox" if request.headers.get("HX-Request") else "runs/output.html"
    return render(request, template, {**context, "access": access})


@org_required
def output_file(request, access: Access, code: uuid.UUID):
    """The archived file (members only); before archiving, the provider's link while it is valid."""
    output = _get_output(access, code)
    if output.file:
        served = serving.for_output(output, download=request.GET.get("download") == "1")
        return _file_response(output.file, served)
    if output.provider_url_valid:
        return redirect(output.provider_url)
    raise Http404("This output is not archived and the provider's link has expired.")


@org_required
def output_thumbnail(request, access: Access, code: uuid.UUID):
    output = _get_output(access, code)
    if output.thumbnail:
        return _file_response(output.thumbnail, serving.for_thumbnail(output))
    if output.file and output.kind == RunOutput.Kind.IMAGE:
        return _file_response(output.file, serving.for_output(output))
    raise Http404("No thumbnail.")


def _file_response(field, served: serving.Served) -> FileResponse:
    try:
        handle = field.open("rb")
    except (FileNotFoundError, OSError):
        raise Http404("The archived file is missing from storage.") from None
    response = FileResponse(handle)
    for header, value in serving.headers(served).items():
        response[header] = value
    response["Cache-Control"] = "private, max-age=3600"
    return response


# -- submit --------------------------------------------------------------------------------------------


def _read_workflow(request) -> tuple[dict | None, dict, str | None]:
    """(workflow, inputs, error message) from the pasted text or the uploaded file."""
    upload = request.FILES.get("workflow_file")
    if upload is not None:
        if upload.size > MAX_WORKFLOW_BYTES:
            return None, {}, f"The workflow file is over {MAX_WORKFLOW_BYTES // 1_000_000} MB."
        raw = upload.read()
    else:
        raw = request.POST.get("workflow", "").encode()
    if len(raw) > MAX_WORKFLOW_BYTES:
        return None, {}, f"The workflow is over {MAX_WORKFLOW_BYTES // 1_000_000} MB."
    if not raw.strip():
        return None, {}, "Paste a workflow in API format, or choose a file."
    try:
        workflow = untrusted_json.loads(raw)
    except untrusted_json.UnsafeJSON as exc:
        return None, {}, f"The workflow {exc}."
    except (ValueError, UnicodeDecodeError) as exc:
        return None, {}, f"The workflow is not valid JSON: {exc}."
    problem = _workflow_problem(workflow)
    if problem:
        return None, {}, problem
    inputs_text = request.POST.get("inputs", "").strip()
    inputs = {}
    if inputs_text:
        try:
            inputs = untrusted_json.loads(inputs_text)
        except untrusted_json.UnsafeJSON as exc:
            return None, {}, f"The inputs {exc}."
        except ValueError as exc:
            return None, {}, f"Inputs are not valid JSON: {exc}."
        if not isinstance(inputs, dict):
            return None, {}, 'Inputs must be a JSON object, e.g. {"6.text": "a cat"}.'
    return workflow, inputs, None


def _workflow_problem(workflow) -> str | None:
    if not isinstance(workflow, dict) or not workflow:
        return "The workflow must be a JSON object of nodes (ComfyUI's “Export (API)” format)."
    if "nodes" in workflow and "links" in workflow:
        return "This is the UI format. In ComfyUI use “Export (API)” and paste that instead."
    for node_id, node in workflow.items():
        if not isinstance(node, dict) or "class_type" not in node:
            return f"Node {str(node_id)[:40]!r} has no class_type: is this an API-format workflow?"
    return None


@org_required(write=True)
def submit(request, access: Access):
    providers = _providers(access).filter(is_active=True)
    context = {"access": access, "providers": providers, "idempotency_key": uuid.uuid4()}
    if request.method != "POST":
        return render(request, "runs/submit.html", context)
    context.update(
        workflow_text=request.POST.get("workflow", ""),
        inputs_text=request.POST.get("inputs", ""),
        selected=request.POST.get("provider", ""),
    )
    try:
        provider = providers.filter(code=uuid.UUID(request.POST.get("provider", ""))).first()
    except ValueError:
        provider = None
    workflow, inputs, error = _read_workflow(request)
    if provider is None:
        error = "Choose one of this organization's providers."
    key = request.POST.get("idempotency_key", "")[:100]
    if "\x00" in key:
        error = "The form's idempotency key contains a NUL character; reload the page and submit again."
    if error or provider is None or workflow is None:
        context["error"] = error
        return render(request, "runs/submit.html", context, status=400)
    try:
        run = submit_run(
            provider,
            workflow,
            inputs,
            origin=Origin.DASHBOARD,
            created_by=request.user,
            # A double-clicked or re-posted form carries the same key, so it lands on the same run.
            idempotency_key=f"dashboard:{request.user.pk}:{key}" if key else None,
        )
    except SubmissionRejected as exc:
        # Nothing was started: the form again, with what the provider (or our check) found wrong.
        context.update(error=f"{provider.name} refused the workflow.", problems=exc.problems)
        return render(request, "runs/submit.html", context, status=422)
    if run.status == Status.FAILED:
        messages.error(request, run.error.get("message", "The provider did not accept the run."))
    else:
        messages.success(request, f"Submitted to {provider.name}.")
    return redirect("run-detail", code=run.code)


# -- stats ---------------------------------------------------------------------------------------------

STATS_WINDOWS = (7, 30, 90)


@org_required
def stats(request, access: Access):
    days, error = 30, None
    raw = request.GET.get("days")
    if raw is not None:
        try:
            days = int(raw)
        except ValueError:
            days = 0
        if days not in STATS_WINDOWS:
            error = f"days must be one of {', '.join(map(str, STATS_WINDOWS))}, not {raw[:20]!r}: showing 30 days."
            days = 30
    result = compute_stats(Run.objects.filter(organization=access.organization), window_from_days(days))
    context = {
        "access": access,
        "stats": result,
        "days": days,
        "windows": STATS_WINDOWS,
        "chart": runs_per_day_svg(result.per_day, days=days, today=timezone.now().date()),
        "legend": [(s, Status(s).label) for s in Status.values],
        # The chart's numbers as a table: a status is never told by its colour alone.
        "day_rows": [
            (day, [counts.get(s, 0) for s in Status.values], sum(counts.values()))
            for day, counts in sorted(result.per_day, reverse=True)
            if counts
        ],
        "error": error,
        **cost_table(result.cost_per_day),
    }
    return render(request, "runs/stats.html", context)


def cost_table(cost_per_day: list) -> dict:
    """The stats page's cost grid: a column per provider, a row per day (newest first), a total each."""
    names = sorted({name for _, costs in cost_per_day for name in costs})
    rows = [(day, [costs.get(name) for name in names], sum(costs.values())) for day, costs in reversed(cost_per_day)]
    return {"cost_providers": names, "cost_rows": rows}


def home(request):
    return redirect("run-list")


def favicon(request):
    return redirect(static("favicon.svg"))


def forbidden(request, exception=None):
    return render(request, "403.html", {"message": str(exception or "")}, status=403)
