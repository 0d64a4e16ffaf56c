"""Cancel, retry and sync-now against the fake provider over real loopback HTTP."""

from __future__ import annotations

import pytest

from providers.fake.state import QUEUED, RUNNING, SUCCEEDED
from runs.actions import ActionError, cancel_run, retry_run, sync_run_now
from runs.models import Origin, Status
from runs.submission import submit_run

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


def test_it_cancels_a_pending_comfyui_prompt(local, fake):
    fake.state.default_script = ((0.0, QUEUED),)
    run = submit_run(local, WORKFLOW, origin=Origin.API)
    assert run.status == Status.PENDING and run.external_id
    run = cancel_run(run)
    assert run.status == Status.CANCELLED
    last = run.events.last()
    assert last is not None and last.to_status == "cancelled"


def test_it_cancels_a_running_comfyui_prompt(local, fake):
    fake.state.default_script = ((0.0, RUNNING),)
    run = sync_run_now(submit_run(local, WORKFLOW, origin=Origin.API))
    assert run.status == Status.RUNNING
    assert cancel_run(run).status == Status.CANCELLED


def test_it_refuses_to_cancel_where_the_provider_has_no_api(org, make_provider, fake):
    esd = make_provider(
        org, name="ESD", kind="aws_esd", base_url=fake.base_url("aws_esd"), secret=fake.secret("aws_esd")
    )
    fake.add_run("aws_esd", "esd-1", script=[(0, QUEUED)])
    from runs.tracking import track_run

    run, _ = track_run(esd, "esd-1")
    with pytest.raises(ActionError, match="has no API to cancel"):
        cancel_run(run)
    run.refresh_from_db()
    assert run.status == Status.PENDING


def test_it_refuses_to_cancel_a_finished_run(local, fake):
    fake.state.default_script = ((0.0, SUCCEEDED),)
    run = sync_run_now(submit_run(local, WORKFLOW, origin=Origin.API))
    assert run.status == Status.SUCCEEDED
    with pytest.raises(ActionError, match="already succeeded"):
        cancel_run(run)


def test_retry_creates_a_new_run_and_keeps_the_original(local, fake, org, make_provider):
    fake.state.default_script = ((0.0, SUCCEEDED),)
    original = sync_run_now(submit_run(local, WORKFLOW, {"2.filename_prefix": "x"}, origin=Origin.API))
    other = make_provider(org, name="Other", kind="comfyui", base_url=fake.base_url("comfyui"), secret={})
    again = retry_run(original, provider=other)
    assert again.pk != original.pk and again.retry_of == original
    assert (again.provider, again.origin, again.workflow, again.inputs) == (other, "retry", WORKFLOW, original.inputs)
    assert again.external_id and again.external_id != original.external_id
    original.refresh_from_db()
    assert original.status == Status.SUCCEEDED


def test_retry_refuses_tracked_runs_and_other_orgs_providers(local, fake, other_org, make_provider):
    from runs.tracking import track_run

    tracked, _ = track_run(local, "11111111-1111-4111-8111-111111111111")
    with pytest.raises(ActionError, match="no workflow"):
        retry_run(tracked)
    run = submit_run(local, WORKFLOW, origin=Origin.API)
    theirs = make_provider(other_org, name="Theirs", kind="comfyui", base_url=fake.base_url("comfyui"), secret={})
    with pytest.raises(ActionError) as refused:
        retry_run(run, provider=theirs)
    assert refused.value.status == 404


def test_a_run_we_asked_to_cancel_that_vanishes_is_cancelled_not_lost(local, fake):
    from django.utils import timezone

    from providers.fake.state import VANISHED
    from runs.models import Run
    from runs.tracking import track_run

    fake.add_run("comfyui", "22222222-2222-4222-8222-222222222222", script=[(0, VANISHED)])
    run, _ = track_run(local, "22222222-2222-4222-8222-222222222222")
    Run.objects.filter(pk=run.pk).update(cancel_requested=timezone.now())
    run.refresh_from_db()
    assert sync_run_now(run).status == Status.CANCELLED
    fake.add_run("comfyui", "33333333-3333-4333-8333-333333333333", script=[(0, VANISHED)])
    other, _ = track_run(local, "33333333-3333-4333-8333-333333333333")
    assert sync_run_now(other).status == Status.PENDING  # unknown, within the grace period: not lost yet


def test_a_submission_that_never_completed_becomes_lost_with_a_reason(local):
    from datetime import timedelta

    from django.utils import timezone

    from runs.models import Run
    from runs.sync import sync_due_runs

    old = Run.objects.create(organization=local.organization, provider=local, origin=Origin.API, next_sync_after=None)
    fresh = Run.objects.create(organization=local.organization, provider=local, origin=Origin.API, next_sync_after=None)
    Run.objects.filter(pk=old.pk).update(created=timezone.now() - timedelta(minutes=11))
    assert sync_due_runs(archive=False).lost == 1
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert old.status == Status.LOST and "never completed" in old.error["message"]
    assert old.events.get().source == "reconciler"
    assert fresh.status == Status.PENDING
