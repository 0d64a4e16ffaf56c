"""Task bodies that django-q2 schedules. Plain functions, no django-q2 imports (comfytrack/qcluster.py
holds that glue).

Each loop runs for up to `seconds`, longer than its one-minute schedule, and hands over to the next
execution when it starts (comfytrack.loops turns): sweeping continues across schedule boundaries.
`seconds` stays below the q cluster's task timeout (settings.Q_CLUSTER["timeout"]).
"""

from __future__ import annotations

import logging

from comfytrack.loops import run_loop
from runs.graphs import fetch_all_due_graphs
from runs.sync import archive_all_due_outputs, sync_due_runs

logger = logging.getLogger("runs.sync")

SYNC_TURN = "sync"
ARCHIVE_TURN = "archive"
LOOP_SECONDS = 100.0
# One pass sweeps for at most this long, so the loop checks its turn and stop signal often.
PASS_SECONDS = 10.0
ARCHIVE_PASS_SECONDS = 20.0
# The graph requests before each archive pass: small JSON answers, bounded so downloads still get their turn.
GRAPH_PASS_SECONDS = 10.0


def sync_loop(seconds: float = LOOP_SECONDS, idle_sleep: float = 0.25) -> int:
    """Sweep repeatedly for up to `seconds`, or until a newer sync loop takes over; returns the runs synced.

    Each run's own `next_sync_after` decides when it is due; overlapping executions are safe: runs are leased.
    An idle pass costs two indexed queries, so the loop looks again every quarter second: a run that
    became due waits for that at most, not a whole second (finish -> visible p50, bench/freshness.py).
    """

    def one_pass(left, should_stop) -> tuple[int, bool]:
        stats = sync_due_runs(max_seconds=min(left, PASS_SECONDS), archive=False, should_stop=should_stop)
        if stats.claimed:
            logger.info(stats.summary())
        return stats.claimed, bool(stats.claimed)

    return run_loop(one_pass, idle_sleep, seconds=seconds, turn=SYNC_TURN)


def archive_loop(seconds: float = LOOP_SECONDS, idle_sleep: float = 2.0) -> int:
    """The after-finish work for up to `seconds`, on its own schedule so that it never delays the sweep:
    the graphs of finished tracked runs (runs.graphs), then the due outputs; returns how many of both."""

    def one_pass(left, should_stop) -> tuple[int, bool]:
        # Each bounded, so that a backlog never runs past the loop's turn or the q cluster's task timeout,
        # and a backlog of one never starves the other.
        graphs = fetch_all_due_graphs(should_stop=should_stop, max_seconds=min(left, GRAPH_PASS_SECONDS))
        archived = archive_all_due_outputs(should_stop=should_stop, max_seconds=min(left, ARCHIVE_PASS_SECONDS))
        return graphs + archived, bool(graphs or archived)

    return run_loop(one_pass, idle_sleep, seconds=seconds, turn=ARCHIVE_TURN)
