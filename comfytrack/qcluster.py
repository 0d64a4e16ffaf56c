"""The django-q2 glue for the background loops: start them as soon as a q cluster starts.

django-q2 runs its scheduler for the first time 30 s after a cluster starts, and a schedule that is
not due yet (a cluster restarted within the minute) waits longer still. So when a worker process
spawns, every scheduled loop without a live holder (comfytrack.loops turns) is queued at once; of several
workers spawning together, one queues each loop. The schedules installed by migrations keep them
going after that.
"""

from __future__ import annotations

import logging

from comfytrack.loops import claim_start

logger = logging.getLogger("comfytrack.loops")

# turn name -> the task that holds it (the schedules in runs/, webhooks/ and alerts/migrations)
LOOPS = {
    "sync": "runs.tasks.sync_loop",
    "archive": "runs.tasks.archive_loop",
    "webhooks": "webhooks.delivery.deliver_loop",
    "alerts": "alerts.tasks.alerts_loop",
}


def start_idle_loops(**signal_kwargs) -> list[str]:
    """Queue each loop that nobody runs; returns the tasks queued. Never raises into django-q2."""
    from django_q.models import Schedule
    from django_q.tasks import async_task

    started: list[str] = []
    try:
        # Only the loops that are scheduled: a schedule an operator removed or paused stays off.
        loops = Schedule.objects.filter(func__in=LOOPS.values()).exclude(repeats=0)
        scheduled = set(loops.values_list("func", flat=True))
    except Exception:
        logger.exception("could not read the loops' schedules; they start on schedule")
        return started
    for turn, func in LOOPS.items():
        if func not in scheduled:
            continue
        try:
            if claim_start(turn):
                async_task(func, task_name=f"comfytrack: {turn} loop (cluster start)")
                started.append(func)
        except Exception:
            logger.exception("could not start the %s loop; its schedule will", turn)
    if started:
        logger.info("started %s", ", ".join(started))
    return started


def connect() -> None:
    from django_q.signals import post_spawn

    post_spawn.connect(start_idle_loops, dispatch_uid="comfytrack.qcluster.start_idle_loops")
