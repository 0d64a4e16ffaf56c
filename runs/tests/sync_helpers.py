"""Helpers for the sync engine's tests (`test_sync`, `test_times`, `test_lost`, `test_breaker`, …): a
provider on the fake server, a tracked fake run, a sweep with every in-flight run due, and a run's
status changes."""

from __future__ import annotations

from django.utils import timezone

from providers.fake import state as S
from runs.models import Run, RunEvent, Status
from runs.sync import SweepStats, sync_due_runs
from runs.tracking import track_run


def provider_for(org, make_provider, fake, kind, secret=None, **config):
    return make_provider(
        org,
        name=f"{kind}-{len(config)}",
        kind=kind,
        base_url=fake.base_url(kind),
        secret=fake.secret(kind) if secret is None else secret,
        config=config,
    )


def tracked(fake, provider, script=((0.0, S.QUEUED),), **kwargs) -> tuple[S.FakeRun, Run]:
    fake_run = fake.add_run(provider.kind, script=script, **kwargs)
    run, created = track_run(provider, fake_run.external_id)
    assert created and run.status == Status.PENDING
    return fake_run, run


def sweep(now=None) -> SweepStats:
    """One sweep with every in-flight run due (instead of sleeping until it is)."""
    now = now or timezone.now()
    Run.objects.in_flight().update(next_sync_after=now)
    return sync_due_runs(now=now)


def transitions(run: Run) -> list[tuple[str, str, str]]:
    return list(RunEvent.objects.filter(run=run).values_list("from_status", "to_status", "source"))
