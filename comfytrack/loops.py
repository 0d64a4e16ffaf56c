"""The shape every long-running background loop shares (sync, archive, webhook delivery, `sync_runs`).

- A pass that fails (the database went away, a bug) is logged; the broken connection is closed, the
  loop backs off a little (1 s, doubling up to 30 s) and goes on. One bad pass never ends the loop.
- SIGTERM or SIGINT asks the loop to stop: the pass in hand is told through `should_stop` (a sweep
  finishes its batch and releases the leases of the next), then the loop returns, within seconds.
- Scheduled loops (django-q2's finest schedule is one minute) run for longer than the minute and hand
  over to the next execution: each takes the loop's turn (`runs.models.LoopTurn`) when it starts, and
  the one it replaced ends after its current pass. Sweeping is continuous across schedule boundaries.

Plain code, no django-q2 imports (comfytrack/qcluster.py holds the django-q2 glue); docs/background-work.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

from django.db import DatabaseError, connections
from django.utils import timezone

from runs.models import LoopTurn

logger = logging.getLogger("comfytrack.loops")

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
# A loop that has not finished a pass for this long is taken to be dead: a new one may start at once.
TURN_STALE_AFTER = timedelta(seconds=20)
# How often a loop records that it is alive (one UPDATE) and sees whether a newer one took over.
BEAT_EVERY = 2.0

# (count to add up, whether it found work). `should_stop()` turns true once a stop was asked for.
OnePass = Callable[[float, Callable[[], bool]], tuple[int, bool]]


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM/SIGINT while the block runs (main thread only; elsewhere it is never set
    by a signal). The previous handlers are restored afterwards."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def ask_to_stop(signum, frame) -> None:
        if not stop.is_set():
            logger.info("%s received: finishing the current pass, then stopping", signal.Signals(signum).name)
        stop.set()

    previous = {signum: signal.signal(signum, ask_to_stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_loop(
    one_pass: OnePass,
    idle_sleep: float,
    *,
    seconds: float | None = None,
    turn: str | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Call `one_pass(seconds_left, should_stop)` until `seconds` have passed (None: until stopped).

    With `turn`, the loop holds that named turn and ends once a newer loop of the same name took it.
    Returns the summed counts. Never raises for a failed pass; exits cleanly on SIGTERM/SIGINT.
    """
    deadline = None if seconds is None else time.monotonic() + seconds
    total = 0
    failures = 0
    holder = take_turn(turn) if turn else None
    beaten = time.monotonic()
    with stop_on_signals() as signalled:
        stopping = stop or signalled

        def should_stop() -> bool:
            return stopping.is_set() or signalled.is_set()

        while not should_stop():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            try:
                close_stale_connections()
                if turn and holder and time.monotonic() - beaten >= BEAT_EVERY:
                    if not keep_turn(turn, holder):
                        logger.info("%s: a newer loop took over", turn)
                        break
                    beaten = time.monotonic()
                count, worked = one_pass(max(left or 60.0, 1.0), should_stop)
            except Exception as exc:
                failures += 1
                delay = min(FIRST_BACKOFF * 2 ** (failures - 1), MAX_BACKOFF)
                message = "a %s pass failed; trying again in %.0f s: %s"
                if isinstance(exc, DatabaseError):  # an outage, not a bug: the message says it all
                    logger.error(message, turn or "loop", delay, str(exc).strip() or type(exc).__name__)
                else:
                    logger.exception(message, turn or "loop", delay, type(exc).__name__)
                close_all_connections()
                _wait(stopping, signalled, delay)
                continue
            failures = 0
            total += count
            if not worked:
                _wait(stopping, signalled, idle_sleep)
    return total


def _wait(stop: threading.Event, signalled: threading.Event, seconds: float) -> None:
    end = time.monotonic() + seconds
    while not (stop.is_set() or signalled.is_set()) and (left := end - time.monotonic()) > 0:
        signalled.wait(min(left, 0.25))


def close_stale_connections() -> None:
    """A long-lived worker must not keep a connection the server dropped or that outlived CONN_MAX_AGE
    (what Django does around each request). One inside a caller's transaction (tests) is left alone."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


def close_all_connections() -> None:
    """Close this thread's database connections after a failure; the next query opens a new one."""
    for conn in connections.all(initialized_only=True):
        if conn.in_atomic_block:
            continue  # a caller's transaction (tests): theirs to roll back, not ours to cut
        with contextlib.suppress(Exception):
            conn.close()


# -- turns ---------------------------------------------------------------------------------------


def holder_id() -> str:
    """Who holds a turn: host and process id (so a restarted cluster on the same host can tell that the
    holder is gone), plus a random part (a process may run the loop more than once)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def take_turn(name: str) -> str:
    holder = holder_id()
    LoopTurn.objects.update_or_create(name=name, defaults={"holder": holder, "beat": timezone.now()})
    return holder


def keep_turn(name: str, holder: str) -> bool:
    """Record that the holder is alive; False once another loop took the turn."""
    return bool(LoopTurn.objects.filter(name=name, holder=holder).update(beat=timezone.now()))


def claim_start(name: str) -> bool:
    """True for one caller when the turn `name` has no live holder: that caller starts the loop.

    A holder is dead when it has not beaten for TURN_STALE_AFTER, or at once when it is a process of
    this host that no longer exists (a cluster killed and started again)."""
    now = timezone.now()
    current = LoopTurn.objects.filter(name=name).first()
    if current is None:
        _, created = LoopTurn.objects.get_or_create(name=name, defaults={"holder": f"start:{holder_id()}", "beat": now})
        return created
    if current.beat > now - TURN_STALE_AFTER and _may_be_alive(current.holder):
        return False
    # Conditional on what was read: of several workers starting at once, one wins.
    claimed = LoopTurn.objects.filter(name=name, holder=current.holder, beat=current.beat).update(
        holder=f"start:{holder_id()}", beat=now
    )
    return bool(claimed)


def _may_be_alive(holder: str) -> bool:
    host, _, rest = holder.removeprefix("start:").partition(":")
    pid_text = rest.partition(":")[0]
    if holder.startswith("start:") or host != socket.gethostname()[:60] or not pid_text.isdigit():
        return True
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
