"""The shared back-off: exponential, capped, jittered in the upper half, never before Retry-After."""

from __future__ import annotations

from datetime import timedelta

import pytest

from comfytrack.net import backoff
from runs.archive import backoff as archive_backoff
from runs.sync import backoff as sync_backoff


@pytest.mark.parametrize(("attempt", "low", "high"), [(0, 5, 10), (1, 10, 20), (3, 40, 80), (20, 450, 900)])
def test_it_doubles_up_to_the_cap_with_jitter_in_the_upper_half(attempt: int, low: float, high: float) -> None:
    delays = {backoff(attempt, base=10, cap=900).total_seconds() for _ in range(200)}
    assert all(low <= d <= high for d in delays)
    assert len(delays) > 100  # jittered, not a fixed schedule


def test_it_never_comes_before_retry_after() -> None:
    assert backoff(0, base=5, cap=900, not_before=3600) == timedelta(seconds=3600)


def test_the_sweep_and_the_archive_use_it_with_their_own_scale() -> None:
    assert timedelta(seconds=2.5) <= sync_backoff(0) <= timedelta(seconds=5)
    assert sync_backoff(50) <= timedelta(minutes=15)
    assert sync_backoff(1, retry_after=120) >= timedelta(seconds=120)
    assert timedelta(seconds=30) <= archive_backoff(1) <= timedelta(minutes=1)
    assert archive_backoff(50) <= timedelta(hours=6)
