"""Template helpers specific to runs pages."""

from __future__ import annotations

from django import template

from runs.queries import encode_cursor

register = template.Library()


@register.filter
def cursor(run) -> str:
    """The run's (created, code) position, as the list's cursors carry it: the live list asks for runs after it."""
    return encode_cursor(run)
