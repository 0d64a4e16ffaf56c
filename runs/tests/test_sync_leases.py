"""Run leases: short, renewed while the batch is in hand, released when a sweep stops or fails."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from django.utils import timezone

from providers.fake import state as S
from runs import sync
from runs.models import Run
from runs.sync import LEASE, claim_due_runs, sync_due_runs

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs(org, make_provider, fake):
    kind = "comfydeploy"
    provider = make_provider(org, kind=kind, base_url=fake.base_url(kind), secret=fake.secret(kind))
    for i in range(5):
        fake.add_run(kind, f"run-{i}", script=((0.0, S.RUNNING),))
    return [
        Run.objects.create(
            organization=org, provider=provider, credential=provider.credentials.first(), external_id=f"run-{i}"
        )
        for i in range(5)
    ]


def test_a_dead_sweepers_runs_are_due_again_within_30_seconds(runs):
    assert len(claim_due_runs(10)) == 5  # and then the sweeper dies
    assert claim_due_runs(10) == []
    assert timedelta(seconds=25) >= LEASE.length
    assert len(claim_due_runs(10, now=timezone.now() + LEASE.length + timedelta(seconds=1))) == 5


def test_leases_are_renewed_while_the_provider_is_slow(runs, fake, monkeypatch):
    monkeypatch.setattr(sync, "LEASE", replace(LEASE, renew_every=0.2))
    fake.set_faults(latency_ms=1200)
    renewals = []
    original = sync.Held.renew

    def counting(self):
        renewals.append(len(self.pks))
        original(self)

    monkeypatch.setattr(sync.Held, "renew", counting)
    stats = sync_due_runs(archive=False)
    assert stats.claimed == 5
    assert len(renewals) >= 3 and max(renewals) == 5
    assert not Run.objects.filter(sync_locked_until__isnull=False).exists()  # all released by the apply


def test_a_stop_request_hands_the_next_batch_back(runs):
    asked = []

    def should_stop():
        asked.append(True)
        return len(asked) >= 2  # once the second batch was claimed, while the first is applied

    stats = sync_due_runs(limit=2, archive=False, should_stop=should_stop)
    assert stats.claimed == 2 and stats.batches == 1
    assert not Run.objects.filter(sync_locked_until__isnull=False).exists()
    assert Run.objects.filter(last_synced__isnull=False).count() == 2
