"""How pages show a run's times: the provider's as they are, comfytrack's observations as approximate."""

from __future__ import annotations

from django import template
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html

from runs.models import Run

register = template.Library()

OBSERVED_TITLE = "Observed by comfytrack, not reported by the provider: approximate (off by up to a poll interval)."


@register.simple_tag
def run_time(run: Run, name: str, fmt: str = "Y-m-d H:i:s") -> str:
    """`<time>` for one of the run's times, "≈" and a title explaining it when comfytrack only observed it;
    an em dash when there is none."""
    value = getattr(run, name)
    if value is None:
        return "—"
    text = date_format(timezone.localtime(value), fmt)
    if run.approximate_times.get(name):
        html = '<time datetime="{}" title="{}" class="approx">≈ {}</time>'
        return format_html(html, value.isoformat(), OBSERVED_TITLE, text)
    title = f"Reported by {run.provider.name}" if run.time_source(name) == "provider" else ""
    return format_html('<time datetime="{}" title="{}">{}</time>', value.isoformat(), title, text)


@register.simple_tag
def approx_mark(run: Run, *names: str) -> str:
    """ "≈ " when a duration is computed from an observed time (`names`: the times it spans); nothing while
    the duration is unknown (a running run has no run time to qualify)."""
    if any(getattr(run, name) is None for name in names):
        return ""
    if any(run.approximate_times.get(name) for name in names):
        return format_html('<span title="{}">≈ </span>', OBSERVED_TITLE)
    return ""
