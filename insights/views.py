"""The compare page: one workflow's runs side by side per provider (`/compare/?workflow=<fingerprint>`),
and, without a workflow, the list of the organization's workflows to choose from."""

from __future__ import annotations

import re
import unicodedata
from datetime import timedelta

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.access import Access, org_required
from insights.charts import SERIES_CLASSES, run_time_per_day_svg
from insights.compare import compare, list_workflows, named_workflows

WINDOWS = (7, 30, 90)
FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")


def label_problem(label: str) -> str | None:
    """Why `label` cannot name a workflow (it is shown on one line in pages, lists and exports), or None."""
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in label):
        return "must be one line of text, without control characters"
    return None


def parse_days(value: str | None, default: int = 30) -> int:
    try:
        days = int(value or default)
    except ValueError:
        return default
    return days if days in WINDOWS else default


@org_required
def compare_page(request, access: Access):
    days = parse_days(request.GET.get("days"))
    now = timezone.now()
    since = now - timedelta(days=days)
    fingerprint = request.GET.get("workflow", "").strip().lower()
    context = {"access": access, "days": days, "windows": WINDOWS, "fingerprint": fingerprint}
    if not fingerprint:
        context["workflows"] = list_workflows(access.organization.pk, since)
        return render(request, "insights/compare.html", context)
    if not FINGERPRINT.match(fingerprint):
        raise Http404("No such workflow.")
    result = compare(access.organization.pk, fingerprint, since, now)
    if result is None:
        raise Http404("No such workflow in this organization.")
    series = [(p.stats.name, p.run_time_per_day) for p in result.providers]
    context.update(
        result=result,
        rows=[(p, f"series-{n % SERIES_CLASSES}") for n, p in enumerate(result.providers)],
        chart=run_time_per_day_svg(series, first=since.date(), last=now.date()),
        has_errors=any(p.top_errors for p in result.providers),
    )
    return render(request, "insights/compare.html", context)


@org_required(write=True)
@require_POST
def workflow_label(request, access: Access):
    """Name a workflow (an empty label goes back to the name taken from its SaveImage prefix)."""
    fingerprint = request.POST.get("workflow", "").strip().lower()
    workflow = named_workflows(access.organization.pk, [fingerprint]).get(fingerprint)
    if workflow is None:
        raise Http404("No such workflow in this organization.")
    label = request.POST.get("label", "").replace("\x00", "").strip()[:100]
    if problem := label_problem(label):
        messages.error(request, f"The name {problem}.")
        return redirect(f"/compare/?workflow={fingerprint}")
    workflow.label = label
    workflow.save(update_fields=["label", "updated"])
    messages.success(request, f"Workflow named {workflow.display_name!r}.")
    return redirect(f"/compare/?workflow={fingerprint}")
