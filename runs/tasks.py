"""Task bodies that django-q2 schedules. Plain functions, no django-q2 imports (STYLE.md rule 13)."""

from __future__ import annotations

import logging
import time

from django.db import close_old_connections

from runs.sync import archive_all_due_outputs, sync_due_runs

logger = logging.getLogger("runs.sync")


def sync_loop(seconds: float = 50.0, idle_sleep: float = 1.0) -> int:
    """Sweep repeatedly for about `seconds`, then return the number of runs synced.

    django-q2's finest schedule is one minute; sub-minute freshness comes from looping here
    (each run's own `next_sync_after` decides when it is due). Overlapping executions are safe:
    runs are leased.
    """
    deadline = time.monotonic() + seconds
    total = 0
    while time.monotonic() < deadline:
        close_old_connections()
        stats = sync_due_runs(max_seconds=max(deadline - time.monotonic(), 1.0), archive=False)
        total += stats.claimed
        if stats.claimed:
            logger.info(stats.summary())
        else:
            time.sleep(idle_sleep)
    return total


def archive_loop(seconds: float = 50.0, idle_sleep: float = 2.0) -> int:
    """Archive due outputs for about `seconds` (its own schedule, so downloads never delay the sweep)."""
    deadline = time.monotonic() + seconds
    total = 0
    while time.monotonic() < deadline:
        close_old_connections()
        archived = archive_all_due_outputs()
        total += archived
        if not archived:
            time.sleep(idle_sleep)
    return total
