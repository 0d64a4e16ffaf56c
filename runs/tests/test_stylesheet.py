"""static/comfytrack.css: each run status's colour is written once and used by badges, chart bars and swatches."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

from runs.models import Status

CSS = (Path(settings.BASE_DIR) / "static" / "comfytrack.css").read_text()
RULES = re.findall(r"([^{}]+)\{([^{}]*)\}", re.sub(r"/\*.*?\*/", "", CSS, flags=re.S))


@pytest.mark.parametrize("status", Status.values)
def test_each_status_colour_is_written_once(status):
    # Badges also draw a shape per status (`.badge.s-failed::before`); only the colour must be written once.
    rules = [
        (selector.strip(), body)
        for selector, body in RULES
        if re.search(rf"\.s-{status}\b", selector) and "--status" in body
    ]
    assert len(rules) == 1, rules
    selector, body = rules[0]
    assert selector == f".s-{status}" and re.fullmatch(r"\s*--status:\s*var\(--[a-z]+\);\s*", body)


@pytest.mark.parametrize("selector", [".badge", "svg.chart rect", ".swatch"])
def test_badges_bars_and_swatches_paint_with_the_status_colour(selector):
    bodies = [body for found, body in RULES if found.strip() == selector]
    assert len(bodies) == 1 and re.search(r"(background|fill): var\(--status, var\(--wait\)\)", bodies[0])
