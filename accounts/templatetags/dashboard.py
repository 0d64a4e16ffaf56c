"""Template helpers for the dashboard layout and pages."""

from __future__ import annotations

import html
from datetime import datetime
from decimal import Decimal

from django import template
from django.utils import timezone
from django.utils.safestring import mark_safe

from accounts.access import current_access
from accounts.models import Organization

register = template.Library()

TIME_AGO_HTML = '<time class="js-ago" datetime="{}" title="{}">{}</time>'


@register.simple_tag(takes_context=True)
def nav_context(context) -> dict:
    """The current organization, the user's role and the organizations to switch between."""
    request = context.get("request")
    if request is None or not request.user.is_authenticated:
        return {}
    access = current_access(request)
    return {
        "access": access,
        "organizations": list(Organization.objects.for_user(request.user).only("code", "name")[:50]),
    }


@register.filter
def duration(seconds: float | None) -> str:
    """0.5 s, 42 s, 3 m 05 s, 2 h 04 m; an em dash when unknown. Under 10 s a tenth is kept: a queue of
    half a second is not "0 s", and 1.4 s is not 1.6 s."""
    if seconds is None:
        return "—"
    if seconds < 9.95:
        return f"{max(seconds, 0.0):.1f} s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


@register.filter
def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


@register.filter
def is_past(moment: datetime | None) -> bool:
    return moment is not None and moment <= timezone.now()


@register.filter
def ago(moment: datetime | None) -> str:
    """How long ago, in the words the page's script keeps up to date: "just now", "12 s ago", "3 min ago",
    "2 h ago", "4 d ago"; the date once it is a month old. Never "0 minutes ago"."""
    if moment is None:
        return "—"
    seconds = (timezone.now() - moment).total_seconds()
    if seconds < 0:
        return "just now"  # clocks of the writer and the reader disagree by a moment
    if seconds < 10:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    if seconds < 30 * 86400:
        return f"{int(seconds // 86400)} d ago"
    return timezone.localtime(moment).strftime("%Y-%m-%d")


@register.simple_tag
def time_ago(moment: datetime | None) -> str:
    """A <time> showing how long ago `moment` was, its absolute time on hover (the script puts it in the
    viewer's time zone; the server's rendering says UTC); an em dash without one.

    Lists show one per row, so it is built here rather than by an included template (several times the
    cost), and its three values are escaped as format_html escapes them (html.escape) without that
    function's per-argument wrappers, which took 40% of a call."""
    if not moment:
        return "—"
    local = timezone.localtime(moment) if timezone.is_aware(moment) else moment
    # Django's date format "Y-m-d H:i:s e": the local time to the second and its zone's name.
    title = f"{local.isoformat(sep=' ', timespec='seconds')[:19]} {local.tzname() or ''}"
    values = [html.escape(text) for text in (moment.isoformat(), title, ago(moment))]
    return mark_safe(TIME_AGO_HTML.format(*values))  # noqa: S308 — every value is escaped above


@register.filter
def usd(value: Decimal | None) -> str:
    """A cost in US dollars: cents for a dollar or more, four significant decimals below (GPU-seconds
    cost fractions of a cent); an em dash when unknown."""
    if value is None:
        return "—"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    whole, fraction = f"{value:.4f}".split(".")
    return f"${whole}.{fraction[:2]}{fraction[2:].rstrip('0')}"
