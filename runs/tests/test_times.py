"""Run times: the provider's own times win over what comfytrack observed, and every time says which it is.

End to end against the fake ComfyUI over loopback HTTP: its history reports `execution_start` and
`execution_success` message timestamps (the moments its script entered those phases), never the poll's.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from accounts.models import ApiKey
from providers.clients.base import RunSnapshot, RunStatus
from providers.fake import state as S
from providers.tests.e2e import forced
from runs.applying import mark_status
from runs.models import Origin, Run, Status
from runs.submission import submit_run
from runs.tests.sync_helpers import provider_for, sweep, tracked
from runs.times import OBSERVED, PROVIDER, merged_times

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


def at(seconds: float | None) -> datetime:
    """A moment the fake provider has recorded (the caller expects it to be set), as a datetime."""
    assert seconds is not None
    return datetime.fromtimestamp(seconds, tz=UTC)


def merge(run: Run, snap: RunSnapshot, status: Status, now: datetime) -> dict:
    finished = status in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT)
    tracked = run.origin == Origin.TRACKED
    return merged_times(run, snap, now, running=status == Status.RUNNING, finished=finished, tracked=tracked)


def snapshot(status=RunStatus.RUNNING, **times) -> RunSnapshot:
    return RunSnapshot(external_id="x", status=status, provider_status=status.value, **times)


# -- the rules ---------------------------------------------------------------------------------------------


def test_a_provider_time_replaces_an_observed_one_and_is_then_kept():
    now = timezone.now()
    run = Run(origin=Origin.API, created=now - timedelta(seconds=60))
    run.started, run.started_source = now - timedelta(seconds=10), OBSERVED
    provider_start = now - timedelta(seconds=14)
    changes = merge(run, snapshot(started=provider_start), Status.RUNNING, now)
    assert changes == {"started": provider_start, "started_source": PROVIDER}
    run.started, run.started_source = provider_start, PROVIDER
    # Another call of the same provider rounding the moment differently does not move it.
    assert merge(run, snapshot(started=provider_start + timedelta(milliseconds=1)), Status.RUNNING, now) == {}


def test_observed_times_only_stand_in_where_the_provider_gives_none():
    now = timezone.now()
    run = Run(origin=Origin.API, created=now - timedelta(seconds=60))
    changes = merge(run, snapshot(), Status.RUNNING, now)
    assert changes == {"started": now, "started_source": OBSERVED}
    run.started, run.started_source = now, OBSERVED
    later = now + timedelta(seconds=4)
    changes = merge(run, snapshot(RunStatus.SUCCEEDED), Status.SUCCEEDED, later)
    assert changes == {"finished": later, "finished_source": OBSERVED}


def test_the_timeline_is_ordered_and_observed_times_give_way():
    now = timezone.now()
    run = Run(origin=Origin.API, created=now - timedelta(seconds=60))
    run.started, run.started_source = now, OBSERVED  # the poll saw it running at `now`...
    finished = now - timedelta(seconds=2)  # ...but the provider's clock says it ended before that
    changes = merge(run, snapshot(RunStatus.SUCCEEDED, finished=finished), Status.SUCCEEDED, now)
    assert changes == {"started": finished, "finished": finished, "finished_source": PROVIDER}


def test_a_tracked_run_was_created_at_the_earliest_time_the_provider_reports():
    now = timezone.now()
    run = Run(origin=Origin.TRACKED, created=now)  # when track_run ran
    queued, started = now - timedelta(minutes=5), now - timedelta(minutes=4)
    changes = merge(run, snapshot(queued=queued, started=started), Status.RUNNING, now)
    assert changes["created"] == queued and changes["created_source"] == PROVIDER
    assert (changes["queued"], changes["started"]) == (queued, started)


def test_a_lost_run_gets_no_finish_time_of_our_making(org, make_provider, make_run):
    provider = make_provider(org)
    run = make_run(provider, status=Status.RUNNING, started=timezone.now(), started_source=PROVIDER)
    mark_status(run, Status.LOST, "reconciler", "gone")
    run.refresh_from_db()
    assert run.status == Status.LOST and run.finished is None and run.run_seconds is None
    assert run.lost_at is not None


# -- end to end: the fake ComfyUI's own times ----------------------------------------------------------------


def test_comfyui_times_are_the_providers_within_50_ms_not_the_polls(org, make_provider, fake, client, alice):
    provider = provider_for(org, make_provider, fake, "comfyui")
    # Running for 5 s already when first polled: the poll's moment is not the start.
    fake_run, run = tracked(fake, provider, script=((0.0, S.QUEUED), (1.0, S.RUNNING)), created=time.time() - 6)
    provider_start = at(fake_run.entered(S.RUNNING))
    poll = timezone.now()
    sweep(poll)
    run.refresh_from_db()
    assert run.status == Status.RUNNING
    # The queue says "running" but not since when: the poll's time stands in, marked as observed.
    assert run.started == poll and run.started_source == OBSERVED
    assert abs((run.started - provider_start).total_seconds()) > 4

    forced(fake, "comfyui", fake_run.external_id, S.SUCCEEDED)
    provider_end = at(fake_run.finished_at())
    time.sleep(0.3)  # the next poll is clearly later than the provider's finish
    sweep()
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED
    assert run.started is not None and run.finished is not None and run.queued is not None
    assert run.run_seconds is not None
    assert abs((run.started - provider_start).total_seconds()) < 0.05 and run.started_source == PROVIDER
    assert abs((run.finished - provider_end).total_seconds()) < 0.05 and run.finished_source == PROVIDER
    assert abs(run.run_seconds - (provider_end - provider_start).total_seconds()) < 0.05
    # create_time in the queue's extra_data is when ComfyUI queued it; a tracked run was created then.
    assert abs((run.queued - at(fake_run.created)).total_seconds()) < 0.05 and run.queued_source == PROVIDER
    assert run.created == run.queued and run.created_source == PROVIDER
    assert run.created <= run.queued <= run.started <= run.finished

    # The API says where each time came from.
    key = ApiKey.issue(org, "t", created_by=alice)[1]
    body = client.get(f"/api/v1/runs/{run.code}", HTTP_X_API_KEY=key).json()
    assert body["times_source"] == dict.fromkeys(("created", "queued", "started", "finished"), "provider")


def test_a_submitted_run_is_queued_when_the_provider_accepted_it_until_the_provider_says(org, make_provider, fake):
    fake.state.comfyui_jobs_api = False
    provider = provider_for(org, make_provider, fake, "comfyui")
    fake.state.default_script = ((0.0, S.QUEUED), (30.0, S.RUNNING))
    before = timezone.now()
    run = submit_run(provider, WORKFLOW, origin=Origin.API)
    assert run.queued is not None
    assert before <= run.queued <= timezone.now() and run.queued_source == OBSERVED
    assert run.created <= run.queued
    sweep()
    run.refresh_from_db()
    fake_run = fake.state.get("comfyui", run.external_id)
    # The fake's queue carries create_time (recent ComfyUI): the provider's time replaces ours.
    assert run.queued is not None
    assert abs((run.queued - at(fake_run.created)).total_seconds()) < 0.05 and run.queued_source == PROVIDER


@pytest.mark.parametrize("kind", ["comfydeploy", "comfycloud", "aws_esd", "speedpix"])
def test_every_kind_ends_with_provider_times(org, make_provider, fake, kind):
    provider = provider_for(org, make_provider, fake, kind)
    fake_run, run = tracked(fake, provider, script=((0.0, S.QUEUED), (1.0, S.RUNNING)), created=time.time() - 6)
    sweep()
    forced(fake, kind, fake_run.external_id, S.SUCCEEDED)
    time.sleep(0.3)
    sweep()
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED
    assert run.finished is not None
    assert run.finished_source == PROVIDER and abs((run.finished - at(fake_run.finished_at())).total_seconds()) < 0.05
    if run.started is not None:
        assert run.started <= run.finished
    assert run.created_source == PROVIDER and run.created <= (run.queued or run.created)


def test_pages_mark_observed_times_as_approximate(org, make_provider, make_run, client, alice):
    provider = make_provider(org)
    now = timezone.now()
    run = make_run(
        provider,
        status=Status.SUCCEEDED,
        origin=Origin.API,
        queued=now - timedelta(seconds=20),
        queued_source=PROVIDER,
        started=now - timedelta(seconds=10),
        started_source=OBSERVED,
        finished=now,
        finished_source=PROVIDER,
    )
    client.force_login(alice)
    page = client.get(f"/runs/{run.code}/").content.decode()
    timeline = page[page.index('<ol class="timeline">') : page.index("</ol>", page.index('<ol class="timeline">'))]
    assert timeline.count("≈ ") == 3  # the observed start, and the queue and run times computed from it
    assert 'class="approx"' in timeline and "Observed by comfytrack" in timeline
    assert f"Reported by {provider.name}" in timeline
    listing = client.get("/runs/").content.decode()
    row = listing[listing.index(f'id="run-{run.code}"') :]
    assert row[: row.index("</tr>")].count("≈ ") == 2
    # Still running, started observed: the queue time is approximate, the run time unknown (no "≈ —").
    run.status, run.finished, run.finished_source = Status.RUNNING, None, ""
    run.save()
    listing = client.get("/runs/").content.decode()
    row = listing[listing.index(f'id="run-{run.code}"') :]
    cells = row[: row.index("</tr>")]
    assert cells.count("≈ ") == 1 and 'data-label="Run time">—<' in cells.replace("\n", "")
