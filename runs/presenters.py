"""What a runs-list row and a gallery tile show, worked out once per row in Python.

A page renders up to 200 rows or 60 tiles. Done in the template, each row resolved its links with
`{% url %}`, rendered its time through an included template, ran filters and read the same properties
several times; done here it costs a fraction of that (bench/pages.py). The templates keep the markup and
escape what they print; the only HTML here comes from the template tags' own functions (time_ago,
approx_mark), which build it with format_html.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.urls import reverse
from django.utils.text import Truncator

from accounts.templatetags.dashboard import duration, percent, time_ago, usd
from runs.models import Run, RunOutput
from runs.queries import encode_cursor
from runs.templatetags.run_times import approx_mark

# The longest run label, error or live status line and caption prompt a row or tile shows (the rest is
# cut with "…").
LABEL_CHARS = 24
LINE_CHARS = 90
PROMPT_CHARS = 80


def truncate_chars(value: Any, length: int) -> str:
    """What Django's `truncatechars` filter makes of `value`: its text, cut to `length` characters ending
    in "…". ASCII text short enough comes back as it is, without the filter's work (Unicode normalisation,
    looking up the translated ellipsis), several microseconds a call."""
    text = str(value)
    if len(text) <= length and text.isascii():
        return text
    return Truncator(text).chars(length)


def url_for_codes(name: str) -> Callable[[uuid.UUID | str], str]:
    """`reverse(name, args=[code])` for many codes at the cost of one reverse: the URL is resolved once
    around a placeholder code, which each code then takes the place of."""
    placeholder = str(uuid.UUID(int=0))
    head, found, tail = reverse(name, args=[placeholder]).partition(placeholder)
    if not found:
        raise ValueError(f"URL {name!r} does not show the code as it is")
    return lambda code: f"{head}{code}{tail}"


@dataclass(slots=True)
class RunRow:
    """One row of the runs list (templates/runs/run_list.html, partial run-row)."""

    run: Run
    url: str
    cursor: str
    live: bool  # unfinished: the live list asks about it again
    label: str
    unseen_since: datetime | None
    error: str  # the error's message, as the provider gave it
    live_status: str
    provider: str
    progress: float | None
    percent: str
    created: str  # HTML (accounts.templatetags.dashboard.time_ago)
    queue_seconds: float | None
    queue_mark: str  # "≈ " (in HTML) when the duration spans a time comfytrack only observed
    queue: str
    run_seconds: float | None
    run_time_mark: str
    run_time: str
    cost: str
    cost_title: str
    cost_estimated: bool


def run_rows(runs: Iterable[Run]) -> list[RunRow]:
    detail_url = url_for_codes("run-detail")
    return [_run_row(run, detail_url) for run in runs]


def _run_row(run: Run, detail_url: Callable[[uuid.UUID | str], str]) -> RunRow:
    live = not run.is_finished
    queue_seconds, run_seconds = run.queue_seconds, run.run_seconds
    # The error's message as the provider gave it: any JSON value, shown when it says something.
    message = run.error.get("message") if isinstance(run.error, Mapping) else None
    return RunRow(
        run=run,
        url=detail_url(run.code),
        cursor=encode_cursor(run),
        live=live,
        label=truncate_chars(run.external_id or run.code, LABEL_CHARS),
        unseen_since=run.unseen_since if live else None,
        error=truncate_chars(message, LINE_CHARS) if message else "",
        live_status=truncate_chars(run.live_status, LINE_CHARS) if live and run.live_status else "",
        provider=run.provider.name,
        progress=run.progress,
        percent=percent(run.progress),
        created=time_ago(run.created),
        queue_seconds=queue_seconds,
        queue_mark=approx_mark(run, "queued", "started"),
        queue=duration(queue_seconds),
        run_seconds=run_seconds,
        run_time_mark=approx_mark(run, "started", "finished"),
        run_time=duration(run_seconds),
        cost=usd(run.cost),
        cost_title=run.get_cost_source_display() if run.cost_source else "",
        cost_estimated=run.cost_source == "estimated",
    )


@dataclass(slots=True)
class GalleryTile:
    """One tile of the gallery (templates/runs/gallery.html, partial gallery)."""

    output: RunOutput
    code: str
    url: str  # the lightbox (a page of its own without JavaScript)
    media: str  # "image" (the thumbnail), "video" (the verified file) or "" (a placeholder)
    media_url: str
    provider: str
    created: str  # HTML (accounts.templatetags.dashboard.time_ago)
    prompt: str


def gallery_tiles(outputs: Iterable[RunOutput], provider_names: Mapping[int, str]) -> list[GalleryTile]:
    """The tiles of `outputs`, each annotated with its run's `run_provider_id` and `run_caption`
    (runs.views.gallery); `provider_names`: each of those providers' name by id."""
    lightbox_url, thumbnail_url, file_url = map(url_for_codes, ("output", "output-thumbnail", "output-file"))
    tiles = []
    for output in outputs:
        code = str(output.code)
        inline = output.inline_kind
        # Only outputs whose bytes were verified as video play here; images show our own WebP thumbnail.
        if output.thumbnail or inline == "image":
            media, media_url = "image", thumbnail_url(code)
        elif inline == "video":
            media, media_url = "video", file_url(code)
        else:
            media, media_url = "", ""
        prompt = output.run_caption  # type: ignore[attr-defined]  # annotated by the view
        tiles.append(
            GalleryTile(
                output=output,
                code=code,
                url=lightbox_url(code),
                media=media,
                media_url=media_url,
                provider=provider_names[output.run_provider_id],  # type: ignore[attr-defined]
                created=time_ago(output.created),
                prompt=truncate_chars(prompt, PROMPT_CHARS) if prompt else "",
            )
        )
    return tiles
