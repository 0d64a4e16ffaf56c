"""The runs list: filters in the URL, search, cursor pages, live rows that stop polling when finished."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from runs.models import Status
from runs.queries import encode_cursor

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


def _poller(content: str) -> str:
    return content[content.index('<div id="runs-live"') :].split(">")[0]


def _rows(fragment: str) -> list[str]:
    """The codes of the <tr>s in a page or a poll's answer, in order."""
    return re.findall(r'<tr id="run-([0-9a-f-]{36})"', fragment)


def test_the_page_marks_what_a_poll_asks_about(signed_in, provider, make_run):
    done = make_run(provider, "done-run", status=Status.SUCCEEDED)
    running = make_run(provider, "running-run", status=Status.RUNNING, progress=0.4)
    content = signed_in.get("/runs/?status=running,succeeded&q=run").content.decode()
    poller = _poller(content)
    # One poller for the page; it carries the filters (new runs must match them) and starts after the newest row.
    assert content.count('hx-trigger="poll"') == 1 and "later=1" not in poller
    assert "/runs/rows/?status=running%2Csucceeded&amp;q=run" in poller and "data-first-page" in poller
    assert f'data-since="{encode_cursor(running)}"' in poller
    # Only unfinished rows are asked about again: a finished status is final.
    assert re.search(rf'<tr id="run-{running.code}"[^>]* data-live', content)
    assert not re.search(rf'<tr id="run-{done.code}"[^>]* data-live', content)


def test_a_poll_refreshes_unfinished_rows_and_adds_new_runs_on_the_first_page(signed_in, provider, make_run):
    now = timezone.now()
    shown = make_run(provider, "shown", status=Status.RUNNING, created=now - timedelta(minutes=5))
    since = encode_cursor(shown)
    assert _rows(signed_in.get(f"/runs/rows/?since={since}&code={shown.code}").content.decode()) == [str(shown.code)]
    shown.status = Status.SUCCEEDED
    shown.save()
    newer = make_run(provider, "newer", status=Status.QUEUED, created=now - timedelta(minutes=1))
    newest = make_run(provider, "newest", status=Status.PENDING, created=now)
    other = make_run(provider, "filtered-out", status=Status.FAILED, created=now)
    answer = signed_in.get(f"/runs/rows/?status=queued,pending,succeeded&since={since}&code={shown.code}")
    fragment = answer.content.decode()
    assert answer.status_code == 200 and "<html" not in fragment
    # The refreshed row replaces itself (out of band); new rows go on top, newest first; no notice.
    refreshed, inserted = fragment.split('hx-swap-oob="afterbegin:#run-rows"')
    assert _rows(refreshed) == [str(shown.code)] and "Succeeded" in refreshed and 'hx-swap-oob="true"' in refreshed
    assert _rows(inserted) == [str(newest.code), str(newer.code)] and str(other.code) not in fragment
    assert re.search(r'<p id="new-runs"[^>]* hidden', fragment)


def test_later_pages_count_new_runs_instead(signed_in, provider, make_run):
    old = make_run(provider, "old", status=Status.SUCCEEDED, created=timezone.now() - timedelta(hours=1))
    for i in range(3):
        make_run(provider, f"new-{i}")
    fragment = signed_in.get(f"/runs/rows/?later=1&since={encode_cursor(old)}").content.decode()
    assert _rows(fragment) == [] and "3 new runs since this page loaded" in fragment
    assert 'href="/runs/"' in fragment


def test_a_first_page_that_was_empty_gets_its_first_runs(signed_in, provider, make_run):
    content = signed_in.get("/runs/").content.decode()
    assert 'data-since=""' in _poller(content) and "No runs yet" in content
    run = make_run(provider, "first")
    assert _rows(signed_in.get("/runs/rows/").content.decode()) == [str(run.code)]


def test_polling_is_off_when_nothing_can_change(signed_in, provider, make_run):
    make_run(provider, status=Status.SUCCEEDED, created=timezone.now() - timedelta(days=3))
    ended = (timezone.now() - timedelta(days=1)).date().isoformat()
    assert "data-poll-off" in _poller(signed_in.get(f"/runs/?created_before={ended}").content.decode())
    assert "data-poll-off" not in _poller(signed_in.get("/runs/").content.decode())


def test_a_poll_with_a_bad_since_only_refreshes(signed_in, provider, make_run):
    run = make_run(provider, status=Status.RUNNING)
    fragment = signed_in.get(f"/runs/rows/?since=garbage!&code={run.code}&code=not-a-uuid").content.decode()
    assert _rows(fragment) == [str(run.code)] and "afterbegin" not in fragment


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
    # Another organization's run is simply not there: not refreshed, not new.
    fragment = client.get(f"/runs/rows/?code={run.code}").content.decode()
    assert str(run.code) not in fragment
    assert b"Unknown provider" in client.get(f"/runs/?provider={provider.code}").content
