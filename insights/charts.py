"""The compare page's chart: median run time per day, one line per provider (server-rendered SVG).

Like runs.charts: no JavaScript, colours from classes (`series-N`), a <title> on every point."""

from __future__ import annotations

from datetime import date, timedelta

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, LEFT, BOTTOM, TOP, RIGHT = 720, 220, 44, 22, 8, 8
SERIES_CLASSES = 6


def _seconds_label(seconds: float, scale: float | None = None) -> str:
    """`seconds` in the unit and precision that suit `scale` (the axis' peak; the value itself by
    default): short runs keep a decimal, so a 1 s peak's axis reads 0.0 / 0.5 / 1.0 s, not 0 / 0 / 1 s."""
    scale = seconds if scale is None else scale
    if scale >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s" if scale >= 10 else f"{seconds:.1f} s"


def run_time_per_day_svg(
    series: list[tuple[str, list[tuple[date, float, int]]]], *, first: date, last: date
) -> SafeString:
    """`series` is [(provider name, [(day, median run seconds, runs)])], drawn in the given order."""
    days = max((last - first).days + 1, 1)
    peak = max([seconds for _, points in series for _, seconds, _ in points] + [1.0])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - BOTTOM - TOP
    step = plot_w / max(days - 1, 1)

    def x(day: date) -> float:
        return LEFT + (day - first).days * step

    def y(seconds: float) -> float:
        return TOP + plot_h - seconds / peak * plot_h

    parts: list[SafeString] = []
    grid = '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/><text class="axis" x="{}" y="{}">{}</text>'
    for tick in (0.0, peak / 2, peak):
        at = y(tick)
        parts.append(
            format_html(
                grid,
                LEFT,
                WIDTH - RIGHT,
                f"{at:.1f}",
                f"{at:.1f}",
                LEFT - 4,
                f"{at + 4:.1f}",
                _seconds_label(tick, peak),
            )
        )
    every = max(days // 6, 1)
    for index in range(0, days, every):
        day = first + timedelta(days=index)
        if x(day) > WIDTH - RIGHT - 30:  # no room for a label at the right edge
            continue
        parts.append(
            format_html(
                '<text class="axis" x="{}" y="{}">{}</text>', f"{x(day):.1f}", HEIGHT - 6, day.strftime("%b %d")
            )
        )
    for number, (name, points) in enumerate(series):
        css = f"series-{number % SERIES_CLASSES}"
        coords = " ".join(f"{x(day):.1f},{y(seconds):.1f}" for day, seconds, _ in points)
        dots = format_html_join(
            "",
            '<circle cx="{}" cy="{}" r="3"><title>{}</title></circle>',
            (
                (
                    f"{x(day):.1f}",
                    f"{y(seconds):.1f}",
                    f"{name} · {day.isoformat()}: median {_seconds_label(seconds)} over {n} run(s)",
                )
                for day, seconds, n in points
            ),
        )
        parts.append(format_html('<g class="{}"><polyline points="{}"/>{}</g>', css, coords, dots))
    body = mark_safe("".join(parts))  # noqa: S308 — every part above was built with format_html
    label = "Median run time per day by provider"
    svg = '<svg class="chart line-chart" viewBox="0 0 {} {}" role="img" aria-label="{}">{}</svg>'
    return format_html(svg, WIDTH, HEIGHT, label, body)
