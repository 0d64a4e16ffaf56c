"""Task bodies that django-q2 schedules. Plain functions, no django-q2 imports (STYLE.md rule 13)."""

from __future__ import annotations

import logging

from comfytrack.loops import run_for
from runs.sync import archive_all_due_outputs, sync_due_runs

logger = logging.getLogger("runs.sync")


def sync_loop(seconds: float = 50.0, idle_sleep: float = 1.0) -> int:
    """Sweep repeatedly for about `seconds`; returns the number of runs synced.

    Each run's own `next_sync_after` decides when it is due; overlapping executions are safe: runs are leased.
    """

    def one_pass(left: float) -> tuple[int, bool]:
        stats = sync_due_runs(max_seconds=left, archive=False)
        if stats.claimed:
            logger.info(stats.summary())
        return stats.claimed, bool(stats.claimed)

    return run_for(seconds, one_pass, idle_sleep)


def archive_loop(seconds: float = 50.0, idle_sleep: float = 2.0) -> int:
    """Archive due outputs for about `seconds` (its own schedule, so downloads never delay the sweep)."""

    def one_pass(left: float) -> tuple[int, bool]:
        archived = archive_all_due_outputs()
        return archived, bool(archived)

    return run_for(seconds, one_pass, idle_sleep)
