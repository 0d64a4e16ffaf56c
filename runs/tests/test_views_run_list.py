"""The runs list: filters in the URL, search, cursor pages, live rows that stop polling when finished."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from runs.models import Status

WORKFLOW = {"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox in snow"}}}


@pytest.fixture
def signed_in(client, alice):
    client.force_login(alice)
    return client


def test_it_lists_runs_newest_first(signed_in, provider, make_run):
    old = make_run(provider, "old-run", created=timezone.now() - timedelta(hours=1))
    new = make_run(provider, "new-run")
    content = signed_in.get("/runs/").content.decode()
    assert content.index(new.external_id) < content.index(old.external_id)


def test_it_filters_by_several_statuses_and_failed_is_one_click(signed_in, provider, make_run):
    make_run(provider, "ok-1", status=Status.SUCCEEDED)
    make_run(provider, "bad-1", status=Status.FAILED, error={"message": "CUDA out of memory"})
    make_run(provider, "lost-1", status=Status.LOST)
    make_run(provider, "run-1", status=Status.RUNNING)
    page = signed_in.get("/runs/")
    assert b'href="?status=problems"' in page.content
    failed = signed_in.get("/runs/?status=problems").content
    assert b"bad-1" in failed and b"lost-1" in failed and b"ok-1" not in failed and b"CUDA out of memory" in failed
    several = signed_in.get("/runs/?status=succeeded&status=running").content
    assert b"ok-1" in several and b"run-1" in several and b"bad-1" not in several


def test_it_filters_by_provider_origin_and_date(signed_in, org, provider, make_provider, make_run):
    other = make_provider(org, name="Cloud", kind="comfycloud", secret={"api_key": "k"})
    make_run(provider, "deploy-run", origin="api")
    make_run(other, "cloud-run", created=timezone.now() - timedelta(days=3))
    assert b"deploy-run" not in signed_in.get(f"/runs/?provider={other.code}").content
    assert b"cloud-run" in signed_in.get("/runs/?provider=Cloud").content
    assert b"cloud-run" not in signed_in.get("/runs/?origin=api").content
    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    recent = signed_in.get(f"/runs/?created_after={since}").content
    assert b"deploy-run" in recent and b"cloud-run" not in recent


def test_it_searches_key_inputs(signed_in, provider, make_run):
    make_run(provider, "fox-run", workflow=WORKFLOW)
    make_run(provider, "other-run")
    content = signed_in.get("/runs/?q=red+fox").content
    assert b"fox-run" in content and b"other-run" not in content


def test_it_paginates_with_a_cursor(signed_in, provider, make_run):
    now = timezone.now()
    for i in range(5):
        make_run(provider, f"page-run-{i}", created=now - timedelta(minutes=i))
    first = signed_in.get("/runs/?limit=2")
    cursor = first.context["next_cursor"]
    assert cursor and [r.external_id for r in first.context["runs"]] == ["page-run-0", "page-run-1"]
    second = signed_in.get(f"/runs/?limit=2&cursor={cursor}")
    assert [r.external_id for r in second.context["runs"]] == ["page-run-2", "page-run-3"]
    assert b"limit=2" in first.content  # the next link keeps the filters (shareable URLs)


def test_it_explains_malformed_filters_instead_of_failing(signed_in, provider, make_run):
    make_run(provider, "visible")
    response = signed_in.get("/runs/?status=exploded&created_after=yesterday&cursor=garbage!&limit=9999&provider=nope")
    assert response.status_code == 200
    content = response.content.decode()
    assert "Unknown status" in content and "created_after must be a date" in content
    assert "cursor is not valid" in content and "limit must be" in content and "Unknown provider" in content
    assert "visible" in content


def _tbody(content: str) -> str:
    return content[content.index('<tbody id="run-rows"') :].split(">")[0]


def test_the_table_polls_once_for_all_rows_while_any_is_unfinished(signed_in, provider, make_run):
    done = make_run(provider, "done-run", status=Status.SUCCEEDED)
    content = signed_in.get("/runs/").content.decode()
    assert "hx-trigger" not in _tbody(content)  # nothing left to watch
    running = make_run(provider, "running-run", status=Status.RUNNING, progress=0.4)
    content = signed_in.get("/runs/").content.decode()
    tbody = _tbody(content)
    # Newest first, like the page: one URL naming every row shown.
    assert "hx-trigger" in tbody and f"/runs/rows/?code={running.code}&amp;code={done.code}" in tbody
    assert content.count("hx-trigger") == 1


def test_the_rows_fragment_keeps_the_order_and_stops_polling_once_all_finished(signed_in, provider, make_run):
    first, second = make_run(provider, status=Status.RUNNING), make_run(provider, status=Status.SUCCEEDED)
    url = f"/runs/rows/?code={second.code}&code={first.code}&code=not-a-uuid"
    fragment = signed_in.get(url).content.decode()
    assert fragment.lstrip().startswith('<tbody id="run-rows"') and "<html" not in fragment
    assert fragment.index(str(second.code)) < fragment.index(str(first.code)) and "hx-trigger" in fragment
    first.status = Status.SUCCEEDED
    first.save()
    fragment = signed_in.get(url).content.decode()
    assert "hx-trigger" not in fragment and fragment.count("Succeeded") == 2


def test_it_ignores_nul_characters_in_filters(signed_in, provider, make_run):
    # PostgreSQL refuses NUL in text: passed through to the search it made the page a 500 there.
    make_run(provider, "fox-run")
    response = signed_in.get("/runs/?q=%00&provider=%00")
    assert response.status_code == 200 and b"fox-run" in response.content
    assert b"fox-run" in signed_in.get("/runs/?q=fox%00-run").content


def test_it_needs_a_login(client, provider, make_run):
    run = make_run(provider)
    assert client.get("/runs/").status_code == 302
    assert client.get(f"/runs/rows/?code={run.code}").status_code == 302


def test_it_hides_other_orgs(client, charlie, provider, make_run):
    run = make_run(provider, "acme-secret-run")
    client.force_login(charlie)
    assert b"acme-secret-run" not in client.get("/runs/").content
    # Another organization's run is simply not there: no row, nothing to poll.
    fragment = client.get(f"/runs/rows/?code={run.code}").content.decode()
    assert str(run.code) not in fragment and "hx-trigger" not in fragment
    assert b"Unknown provider" in client.get(f"/runs/?provider={provider.code}").content
