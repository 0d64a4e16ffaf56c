"""The relative times every list shows (the page's script keeps them current with the same words)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.template import engines
from django.utils import timezone

from accounts.templatetags.dashboard import ago, duration, time_ago

# What time_ago showed as a template of its own: the tag must show the same.
TIME_AGO_TEMPLATE = (
    '{% load dashboard %}{% if moment %}<time class="js-ago" datetime="{{ moment.isoformat }}" '
    "title=\"{{ moment|date:'Y-m-d H:i:s e' }}\">{{ moment|ago }}</time>{% else %}—{% endif %}"
)


@pytest.mark.parametrize(
    "seconds, words",
    [
        (0, "just now"),
        (9.9, "just now"),
        (-3, "just now"),  # a writer's clock slightly ahead of ours
        (12, "12 s ago"),
        (59, "59 s ago"),
        (60, "1 min ago"),
        (3 * 60 + 20, "3 min ago"),
        (2 * 3600, "2 h ago"),
        (4 * 86400, "4 d ago"),
    ],
)
def test_relative_times_never_say_zero_minutes(seconds, words):
    assert ago(timezone.now() - timedelta(seconds=seconds)) == words


def test_a_month_old_moment_is_its_date_and_none_is_a_dash():
    moment = timezone.now() - timedelta(days=40)
    assert ago(moment) == timezone.localtime(moment).strftime("%Y-%m-%d") and ago(None) == "—"


@pytest.mark.parametrize(
    "seconds, text",
    [
        (None, "—"),
        (0, "0.0 s"),
        (0.5, "0.5 s"),  # a fast provider's queue: not "0 s"
        (1.44, "1.4 s"),
        (9.94, "9.9 s"),
        (9.96, "10 s"),
        (42.4, "42 s"),
        (185, "3 m 05 s"),
        (2 * 3600 + 4 * 60, "2 h 04 m"),
    ],
)
def test_durations_keep_a_tenth_under_ten_seconds(seconds, text):
    assert duration(seconds) == text


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/St_Johns"])
@pytest.mark.parametrize("seconds", [None, 5, 3 * 60 + 20, 4 * 86400, 400 * 86400])
def test_time_ago_shows_what_the_date_filter_and_ago_show(zone, seconds):
    moment = None if seconds is None else timezone.now() - timedelta(seconds=seconds, microseconds=123)
    with timezone.override(zone):
        expected = engines["django"].from_string(TIME_AGO_TEMPLATE).render({"moment": moment})
        assert time_ago(moment) == expected
