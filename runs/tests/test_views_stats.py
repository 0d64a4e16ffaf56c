"""Stats page with a server-rendered SVG chart."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from runs.models import Status


def test_it_shows_stats_and_an_svg_chart(client, alice, provider, make_run):
    now = timezone.now()
    make_run(provider, status=Status.SUCCEEDED, started=now - timedelta(seconds=30), finished=now)
    make_run(provider, status=Status.FAILED, error={"message": "CUDA out of memory"})
    client.force_login(alice)
    content = client.get("/stats/").content.decode()
    assert "<svg" in content and 'class="s-succeeded"' in content and 'class="s-failed"' in content
    assert "50%" in content and "CUDA out of memory" in content and provider.name in content
    assert "<script" not in content.split("</head>")[1]


@pytest.mark.parametrize("days, ok", [("7", True), ("90", True), ("abc", False), ("-5", False), ("100000", False)])
def test_it_says_what_was_wrong_with_the_window(client, alice, days, ok):
    client.force_login(alice)
    response = client.get(f"/stats/?days={days}")
    assert response.status_code == 200
    content = response.content.decode()
    assert ("days must be one of 7, 30, 90" in content) is not ok
    assert response.context["days"] == (int(days) if ok else 30)


def test_it_hides_other_orgs(client, charlie, provider, make_run):
    make_run(provider, status=Status.FAILED, error={"message": "acme-only failure"})
    client.force_login(charlie)
    content = client.get("/stats/").content.decode()
    assert "acme-only failure" not in content and provider.name not in content


def test_the_chart_has_its_numbers_as_a_table(client, alice, provider, make_run):
    make_run(provider, status="failed")
    make_run(provider, status="succeeded")
    make_run(provider, status="succeeded")
    client.force_login(alice)
    response = client.get("/stats/")
    today = timezone.now().date()
    ((day, counts, total),) = response.context["day_rows"]
    assert day == today and total == 3 and counts[Status.values.index("succeeded")] == 2
    assert "The same numbers as a table" in response.content.decode()
