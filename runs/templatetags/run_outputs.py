"""How pages show an output that has no picture to show (yet): its kind as an icon and its state in words."""

from __future__ import annotations

import html

from django import template
from django.utils.safestring import SafeString, mark_safe

from runs.models import RunOutput

register = template.Library()

# Each kind's icon (an outline drawn in CSS's currentColor); any other kind is a page.
ICONS = {
    "image": (
        '<rect x="3" y="4" width="18" height="16" rx="2"/><circle cx="9" cy="10" r="2"/><path d="M21 17l-5-5-9 8"/>'
    ),
    "video": '<rect x="3" y="5" width="14" height="14" rx="2"/><path d="M17 10l4-3v10l-4-3"/>',
    "audio": '<path d="M9 18V6l11-2v12"/><circle cx="6" cy="18" r="3"/><circle cx="17" cy="16" r="3"/>',
}
PAGE_ICON = '<path d="M6 3h8l4 4v14H6z"/><path d="M14 3v4h4"/>'
PLACEHOLDER_HTML = (
    '<span class="placeholder">\n'
    '  <svg viewBox="0 0 24 24" aria-hidden="true" focusable="false">{}</svg>\n'
    "  <span>{}</span>\n"
    "</span>"
)


def archive_state(output: RunOutput) -> str:
    if output.archived:
        return output.get_kind_display()
    if output.archive_error and not output.next_archive_after:
        return "Archive failed"
    return "Archiving…"


@register.simple_tag
def output_placeholder(output: RunOutput) -> SafeString:
    """Built here rather than by an included template: the gallery shows one per tile still archiving, and
    an include costs several times as much. The icon is a constant; the words are escaped."""
    icon = ICONS.get(output.kind, PAGE_ICON)
    return mark_safe(PLACEHOLDER_HTML.format(icon, html.escape(archive_state(output))))  # noqa: S308 — escaped above
