"""Runs a provider stops knowing: a restarted ComfyUI's runs are lost within two sweeps; providers with
durable records get a grace period that the run page, the list and the API announce."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from accounts.models import ApiKey
from providers.fake import state as S
from runs.models import Run, Status
from runs.tests.sync_helpers import provider_for, sweep, tracked, transitions


def test_a_restarted_comfyui_has_its_runs_lost_within_two_sweeps(org, make_provider, fake):
    provider = provider_for(org, make_provider, fake, "comfyui")
    runs = [tracked(fake, provider, script=((0.0, S.QUEUED), (0.0, S.RUNNING)))[1] for _ in range(2)]
    runs.append(tracked(fake, provider, script=((0.0, S.QUEUED),))[1])
    sweep()
    assert sorted(Run.objects.values_list("status", flat=True)) == ["queued", "running", "running"]

    fake.state.restart("comfyui")  # forgets queue and history; the server answers again at once
    first = timezone.now()
    stats = sweep(first)
    assert stats.errors == 0 and stats.lost == 0
    for run in Run.objects.all():
        # One answer is not believed (a run moving from queue to history): looked at again shortly.
        assert run.unknown_since == first and run.lost_at == first + timedelta(seconds=4)
        assert run.next_sync_after is not None and run.next_sync_after <= first + timedelta(seconds=4)
    stats = sweep(first + timedelta(seconds=4))
    assert stats.lost == 3
    for run in Run.objects.all():
        assert run.status == Status.LOST and "no longer knows" in run.error["message"]
        assert run.finished is None and run.run_seconds is None and run.unknown_since == first
        assert transitions(run)[-1][1:] == ("lost", "reconciler")


def test_a_comfyui_run_that_finished_between_the_two_looks_is_not_lost(org, make_provider, fake):
    provider = provider_for(org, make_provider, fake, "comfyui")
    fake_run, run = tracked(fake, provider, script=((0.0, S.RUNNING),))
    sweep()
    fake_run.force(S.VANISHED)
    now = timezone.now()
    sweep(now)
    fake_run.force(S.SUCCEEDED)
    sweep(now + timedelta(seconds=4))
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED and run.unknown_since is None and run.lost_at is None


def test_a_durable_provider_announces_the_grace_period(org, make_provider, fake, client, alice):
    provider = provider_for(org, make_provider, fake, "comfydeploy")
    fake_run, run = tracked(fake, provider, script=((0.0, S.RUNNING),))
    sweep()
    fake_run.force(S.VANISHED)
    now = timezone.now()
    sweep(now)
    run.refresh_from_db()
    assert run.status == Status.RUNNING and run.lost_at == now + timedelta(minutes=10)

    key = ApiKey.issue(org, "t", created_by=alice)[1]
    body = client.get(f"/api/v1/runs/{run.code}", HTTP_X_API_KEY=key).json()
    assert body["unseen_since"] and body["lost_at"] and body["status"] == "running"
    assert body["lost_at"].startswith((now + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M"))

    client.force_login(alice)
    since, until = timezone.localtime(now), timezone.localtime(now + timedelta(minutes=10))
    expected = f"Not seen by the provider since {since:%H:%M}"
    detail = client.get(f"/runs/{run.code}/").content.decode()
    assert f"{expected}:{since:%S} — will be marked lost at {until:%H:%M:%S}" in detail
    listing = client.get("/runs/").content.decode()
    assert f"{expected} — will be marked lost at {until:%H:%M}" in listing

    # Seen again: the warning goes.
    fake_run.force(S.RUNNING)
    sweep(now + timedelta(minutes=1))
    body = client.get(f"/api/v1/runs/{run.code}", HTTP_X_API_KEY=key).json()
    assert body["unseen_since"] is None and body["lost_at"] is None
    assert "Not seen by the provider" not in client.get(f"/runs/{run.code}/").content.decode()


def test_a_lost_run_page_shows_when_it_was_last_seen_and_no_run_time(org, make_provider, fake, client, alice):
    provider = provider_for(org, make_provider, fake, "comfyui")
    _, run = tracked(fake, provider, script=((0.0, S.RUNNING),))
    sweep()
    fake.state.restart("comfyui")
    now = timezone.now()
    sweep(now)
    sweep(now + timedelta(seconds=5))
    client.force_login(alice)
    page = client.get(f"/runs/{run.code}/").content.decode()
    assert "comfytrack never saw it end" in page and "not seen by the provider since" in page
    assert "Finished</b>" not in page
