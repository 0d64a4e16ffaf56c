"""Server-rendered SVG charts (no JavaScript chart library; styled by classes, so the CSP holds)."""

from __future__ import annotations

from datetime import date, timedelta

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from runs.models import Status

# Bottom to top: the outcome people care about first sits on the baseline.
STACK_ORDER = [
    s.value
    for s in (
        Status.SUCCEEDED,
        Status.FAILED,
        Status.TIMED_OUT,
        Status.LOST,
        Status.CANCELLED,
        Status.RUNNING,
        Status.QUEUED,
        Status.PENDING,
    )
]
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 220, 36, 22, 8


def runs_per_day_svg(per_day: list[tuple[date, dict[str, int]]], *, days: int, today: date) -> SafeString:
    """A stacked bar per day (the last `days` days), one colour class per status, with a <title> per bar."""
    counts = dict(per_day)
    first = today - timedelta(days=days - 1)
    dates = [first + timedelta(days=i) for i in range(days)]
    peak = max([sum(counts.get(d, {}).values()) for d in dates] + [1])
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - BOTTOM - TOP
    slot = plot_w / days
    bar_w = max(slot * 0.8, 1)
    parts: list[SafeString] = []
    for tick in sorted({0, peak // 2, peak}):
        y = TOP + plot_h - tick / peak * plot_h
        parts.append(
            format_html(
                '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/><text class="axis" x="{}" y="{}">{}</text>',
                LEFT,
                WIDTH - 4,
                f"{y:.1f}",
                f"{y:.1f}",
                LEFT - 4,
                f"{y + 4:.1f}",
                tick,
            )
        )
    for index, day in enumerate(dates):
        x = LEFT + index * slot + (slot - bar_w) / 2
        y = TOP + plot_h
        day_counts = counts.get(day, {})
        label = f"{day.isoformat()}: " + (", ".join(f"{n} {s}" for s, n in sorted(day_counts.items())) or "no runs")
        rects = []
        for status in STACK_ORDER:
            n = day_counts.get(status, 0)
            if not n:
                continue
            h = n / peak * plot_h
            y -= h
            rects.append((status, f"{x:.1f}", f"{y:.1f}", f"{bar_w:.1f}", f"{h:.1f}"))
        parts.append(
            format_html(
                "<g><title>{}</title>{}</g>",
                label,
                format_html_join("", '<rect class="s-{}" x="{}" y="{}" width="{}" height="{}"/>', rects),
            )
        )
        if (days <= 31 and (index % max(days // 7, 1) == 0)) or (days > 31 and index % (days // 6) == 0):
            parts.append(
                format_html('<text class="axis" x="{}" y="{}">{}</text>', f"{x:.1f}", HEIGHT - 6, day.strftime("%b %d"))
            )
    body = mark_safe("".join(parts))  # noqa: S308 — every part above was built with format_html
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="Runs per day by status">{}</svg>',
        WIDTH,
        HEIGHT,
        body,
    )
