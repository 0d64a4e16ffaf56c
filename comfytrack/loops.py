"""The shape every scheduled background loop shares (sync, archive, webhook delivery).

django-q2's finest schedule is one minute; sub-minute freshness comes from a task that keeps working
for most of that minute. Plain code, no django-q2 imports (STYLE.md rule 13).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.db import close_old_connections


def run_for(seconds: float, one_pass: Callable[[float], tuple[int, bool]], idle_sleep: float) -> int:
    """Call `one_pass(seconds_left)` until about `seconds` have passed. Each pass returns (a count to
    add up, whether it found work); after a pass that found none, sleep. Returns the summed counts."""
    deadline = time.monotonic() + seconds
    total = 0
    while (left := deadline - time.monotonic()) > 0:
        close_old_connections()  # a long-lived worker must not keep a connection the server dropped
        count, worked = one_pass(max(left, 1.0))
        total += count
        if not worked:
            time.sleep(idle_sleep)
    return total
