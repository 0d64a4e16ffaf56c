"""The placeholder of an output without a picture: its kind's icon and its archive state in words."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.template import Context, Template

from runs.models import RunOutput
from runs.templatetags.run_outputs import ICONS, PAGE_ICON

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def placeholder(**fields) -> str:
    output = RunOutput(filename="a.png", **fields)
    return Template("{% load run_outputs %}{% output_placeholder output %}").render(Context({"output": output}))


@pytest.mark.parametrize(
    ("kind", "icon"),
    [
        ("image", ICONS["image"]),
        ("video", ICONS["video"]),
        ("audio", ICONS["audio"]),
        ("mesh", PAGE_ICON),
        ("file", PAGE_ICON),
    ],
)
def test_it_draws_the_kinds_icon(kind, icon):
    html = placeholder(kind=kind, archived=NOW)
    assert f'<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false">{icon}</svg>' in html
    assert html.startswith('<span class="placeholder">') and html.endswith("</span>")


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"kind": "mesh", "archived": NOW}, "3D mesh"),
        ({"kind": "image", "archive_error": "403 from the provider", "next_archive_after": None}, "Archive failed"),
        ({"kind": "image", "archive_error": "timed out", "next_archive_after": NOW}, "Archiving…"),
        ({"kind": "image", "next_archive_after": NOW}, "Archiving…"),
    ],
)
def test_it_says_where_the_archive_stands(fields, words):
    assert f"<span>{words}</span>" in placeholder(**fields)
