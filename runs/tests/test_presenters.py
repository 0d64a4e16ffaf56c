"""What the runs list and the gallery work out in Python per row (runs.presenters) is what the template
filters and tags they stand in for would show."""

from __future__ import annotations

import uuid

import pytest
from django.template.defaultfilters import truncatechars
from django.urls import clear_script_prefix, reverse, set_script_prefix
from django.utils import timezone

from runs.presenters import run_rows, truncate_chars, url_for_codes


@pytest.mark.parametrize(
    "value",
    [
        "",
        "ext-1",
        "x" * 24,  # exactly the limit: kept whole
        "x" * 25,  # one over: cut, with the ellipsis
        "café au lait",  # short, not ASCII
        "cafe\u0301 au lait, a long order",  # a combining accent (decomposed é): not counted as a character
        "naïve " * 10,
        "🦊" * 30,
        "<b>bold</b> & 'quoted' \"text\" that is longer than the limit",
        uuid.UUID("8d56c78b-6d07-4557-9ccf-2db3d56d043d"),  # a run shown by its code
        12345678901234567890123456789,  # a number (the JSON of an error message)
        ["a", "list"],
    ],
)
@pytest.mark.parametrize("length", [24, 8, 1])
def test_truncate_chars_is_what_the_truncatechars_filter_shows(value, length):
    assert truncate_chars(value, length) == truncatechars(value, length)


@pytest.mark.parametrize("name", ["run-detail", "output", "output-thumbnail", "output-file"])
@pytest.mark.parametrize("prefix", ["/", "/comfytrack/"])
def test_url_for_codes_is_reverse_for_every_code(name, prefix):
    set_script_prefix(prefix)
    try:
        url = url_for_codes(name)
        for code in (uuid.uuid4(), uuid.uuid4(), uuid.UUID(int=0)):
            assert url(code) == reverse(name, args=[code])
    finally:
        clear_script_prefix()


@pytest.mark.parametrize("error", [["not", "a", "dict"], "a bare string", {"message": ""}, {"message": None}, {}])
def test_an_error_without_a_message_shows_no_error_line(provider, make_run, error):
    (row,) = run_rows([make_run(provider, status="failed", error=error)])
    assert row.error == ""


def test_a_lost_run_shows_no_live_status_or_unseen_warning(provider, make_run):
    """Both are for runs still in flight; a lost run says so by its status."""
    now = timezone.now()
    fields = {"live_status": "step 3/20", "unknown_since": now, "lost_at": now}
    running, lost = run_rows(
        [make_run(provider, status="running", **fields), make_run(provider, status="lost", **fields)]
    )
    assert (running.live, running.live_status, running.unseen_since) == (True, "step 3/20", now)
    assert (lost.live, lost.live_status, lost.unseen_since) == (False, "", None)
