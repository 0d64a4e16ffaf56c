"""The shared back-off: exponential, capped, jittered in the upper half, never before Retry-After."""

from __future__ import annotations

from datetime import timedelta

import pytest

from comfytrack.net import backoff
from runs.archive import download_retry_delay
from runs.sync import poll_retry_delay


@pytest.mark.parametrize(("attempt", "low", "high"), [(0, 5, 10), (1, 10, 20), (3, 40, 80), (20, 450, 900)])
def test_it_doubles_up_to_the_cap_with_jitter_in_the_upper_half(attempt: int, low: float, high: float) -> None:
    delays = {backoff(attempt, base=10, cap=900).total_seconds() for _ in range(200)}
    assert all(low <= d <= high for d in delays)
    assert len(delays) > 100  # jittered, not a fixed schedule


def test_each_user_picks_the_factor_and_the_spread() -> None:
    delays = {backoff(2, base=30, cap=36_000, factor=4, spread=0.1).total_seconds() for _ in range(200)}
    assert all(432 <= d <= 480 for d in delays) and len(delays) > 100
    assert all(
        32_400 <= backoff(9, base=30, cap=36_000, factor=4, spread=0.1).total_seconds() <= 36_000 for _ in range(50)
    )


def test_it_never_comes_before_retry_after() -> None:
    assert backoff(0, base=5, cap=900, not_before=3600) == timedelta(seconds=3600)


def test_the_sweep_and_the_archive_use_it_with_their_own_scale() -> None:
    assert timedelta(seconds=2.5) <= poll_retry_delay(0) <= timedelta(seconds=5)
    assert poll_retry_delay(50) <= timedelta(minutes=15)
    assert poll_retry_delay(1, retry_after=120) >= timedelta(seconds=120)
    assert timedelta(seconds=30) <= download_retry_delay(1) <= timedelta(minutes=1)
    assert download_retry_delay(50) <= timedelta(hours=6)
