"""Dashboard pages that work on many runs at once: registering a list of ids (`track_many`)."""

from __future__ import annotations

import uuid
from itertools import batched

from django.shortcuts import render

from accounts.access import Access, org_required
from providers.models import Provider
from runs.tracking import MAX_TRACK_IDS, TrackResult, read_external_ids, track_runs

# A pasted list or an uploaded CSV: 10 statements of 1,000 at most, well within one request.
MAX_PAGE_IDS = 10_000
MAX_UPLOAD_BYTES = 2_000_000


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
    context: dict = {"access": access, "providers": providers, "max_ids": MAX_PAGE_IDS}
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
    if error:
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
