"""Template helpers for the dashboard layout and pages."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone

from accounts.access import current_access
from accounts.models import Organization

register = template.Library()


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
    """42 s, 3 m 05 s, 2 h 04 m; an em dash when unknown."""
    if seconds is None:
        return "—"
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
