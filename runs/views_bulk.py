"""Dashboard pages that work on many runs or outputs at once: registering a list of ids (`track_many`),
exporting the filtered runs list (`export_runs`), downloading a gallery selection as a zip (`gallery_zip`)."""

from __future__ import annotations

import uuid
from itertools import batched

from django.db.models import Count, Q, Sum
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.access import Access, org_required
from providers.models import Provider
from runs import export, zipping
from runs.models import CostSource, Run, RunOutput
from runs.queries import filter_runs, parse_filters
from runs.tracking import MAX_TRACK_IDS, TrackResult, read_external_ids, track_runs

# A pasted list or an uploaded CSV: 10 statements of 1,000 at most, well within one request.
MAX_PAGE_IDS = 10_000
MAX_UPLOAD_BYTES = 2_000_000
ESTIMATED = Q(cost_source=CostSource.ESTIMATED)


def _read_ids(request) -> tuple[list[str], str | None]:
    upload = request.FILES.get("ids_file")
    if upload is not None:
        if upload.size > MAX_UPLOAD_BYTES:
            return [], f"The file is over {MAX_UPLOAD_BYTES // 1_000_000} MB."
        try:
            text = upload.read().decode("utf-8")
        except UnicodeDecodeError:
            return [], "The file is not UTF-8 text (save the CSV as UTF-8)."
    else:
        text = request.POST.get("ids", "")
    ids = read_external_ids(text.replace("\x00", ""))
    if not ids:
        return [], "Paste some run ids, or choose a CSV or text file."
    if len(ids) > MAX_PAGE_IDS:
        return [], f"{len(ids):,} ids: at most {MAX_PAGE_IDS:,} at once here (use manage.py track_runs for more)."
    return ids, None


@org_required(write=True)
def track_many(request, access: Access):
    """Register runs submitted elsewhere: paste ids (one per line, or separated by commas) or upload a CSV."""
    providers = Provider.objects.filter(organization=access.organization, is_active=True).order_by("name")
    context: dict = {"access": access, "providers": providers, "max_ids": f"{MAX_PAGE_IDS:,}"}
    if request.method != "POST":
        return render(request, "runs/track.html", context)
    context.update(ids_text=request.POST.get("ids", "")[:200_000], selected=request.POST.get("provider", ""))
    try:
        provider = providers.filter(code=uuid.UUID(context["selected"])).first()
    except ValueError:
        provider = None
    ids, error = _read_ids(request)
    if provider is None:
        error = "Choose one of this organization's providers."
    if error or provider is None:
        context["error"] = error
        return render(request, "runs/track.html", context, status=400)
    results: list[TrackResult] = []
    for chunk in batched(ids, MAX_TRACK_IDS):
        results += track_runs(provider, chunk, created_by=request.user)
    context.update(
        provider=provider,
        results=results,
        n_created=sum(r.created for r in results),
        n_refused=sum(r.error is not None for r in results),
        ids_text="",
    )
    context["n_existing"] = len(results) - context["n_created"] - context["n_refused"]
    return render(request, "runs/track.html", context)


@org_required
def export_runs(request, access: Access):
    """The runs list with the same filters, as CSV (`?format=csv`) or JSON Lines (`?format=jsonl`)."""
    fmt = request.GET.get("format", "csv")
    filters = parse_filters(request.GET, access.organization)
    problems = [str(e) for e in filters.errors]
    if fmt not in export.FORMATS:
        problems.append(f"Unknown format {fmt[:20]!r} (use csv or jsonl).")
    if problems:
        return HttpResponse(" ".join(problems), status=400, content_type="text/plain; charset=utf-8")
    runs = filter_runs(Run.objects.filter(organization=access.organization), filters)
    return export.streamed(runs, access.organization.pk, fmt, timezone.now())


@org_required
@require_POST
def gallery_zip(request, access: Access):
    """The selected outputs' archived files as one zip, streamed, with a manifest.json of all of them."""
    codes = []
    for value in request.POST.getlist("output")[: zipping.MAX_ZIP_OUTPUTS + 1]:
        try:
            codes.append(uuid.UUID(value))
        except ValueError:
            continue
    if not codes or len(codes) > zipping.MAX_ZIP_OUTPUTS:
        message = f"Select from 1 to {zipping.MAX_ZIP_OUTPUTS} outputs to download."
        return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
    outputs = (
        RunOutput.objects.filter(organization=access.organization, code__in=codes)
        .select_related("run__provider")
        .defer("run__workflow", "run__inputs", "run__search_text")
        .order_by("created", "id")
    )
    if not outputs.exists():
        raise Http404("None of the selected outputs is in this organization.")
    now = timezone.now()
    response = StreamingHttpResponse(
        zipping.zip_chunks(outputs.iterator(chunk_size=100), now), content_type="application/zip"
    )
    response["Content-Disposition"] = f'attachment; filename="comfytrack-outputs-{now:%Y%m%d-%H%M%S}.zip"'
    response["Cache-Control"] = "no-store"
    return response


@org_required
def cost_total(request, access: Access):
    """The total cost of the runs the list's filters select (loaded after the page, it reads them all)."""
    filters = parse_filters(request.GET, access.organization)
    runs = filter_runs(Run.objects.filter(organization=access.organization), filters)
    totals = runs.aggregate(total=Sum("cost"), costed=Count("cost"), estimated=Count("cost", filter=ESTIMATED))
    return render(request, "runs/run_list.html#cost-total", {"totals": totals, "filters": filters})
