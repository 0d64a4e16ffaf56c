"""The sync engine: claim due runs, ask their providers, apply what they say (docs/architecture.md).

1. `claim_due_runs` takes a batch of due, in-flight, unleased runs and leases them, in one statement
   (`comfytrack.leases.Lease.claim_where`).
2. A `runs.fetching.Fetcher` groups the runs by credential and calls each client's `fetch_many` on
   its own thread and event loop, outside any transaction, while the previous batch is applied.
3. `apply_results` writes the answers through `runs.applying.apply_many` (conditional updates, in
   bulk), schedules the next poll and clears the lease. One bad run never stalls the sweep (crash guard).

Batches overlap: while one is applied, the next is claimed (`Claims`, on PostgreSQL on a thread and
connection of its own) and fetched.

Keep this module free of django-q2 imports: django-q2 only schedules `sync_due_runs`.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from comfytrack import metrics, net
from comfytrack.leases import Holder, Lease
from comfytrack.sql import column
from providers.clients.base import ProviderError, RunSnapshot, RunStatus
from providers.models import Credential
from runs import per_sweep
from runs.applying import apply_many, apply_snapshot, mark_status
from runs.archive import archive_due_batch
from runs.breaker import counts_against_credential, probe_credentials
from runs.fetching import Fetcher, Pending, with_accounts
from runs.graphs import fetch_all_due_graphs
from runs.models import IN_FLIGHT, SWEEP_FIELDS, TERMINAL, EventSource, Run, Status, allowed_transition

logger = logging.getLogger("runs.sync")

# A claimed run is leased for 15 s, and the lease is renewed every 5 s while its batch is in hand
# (fetching takes as long as the provider does): a worker that dies mid-sweep leaves its runs to the
# next sweeper within the lease, not after a lease sized for the slowest fetch.
LEASE = Lease(Run, "sync_locked_until", timedelta(seconds=15), renew_every=5.0)
# Runs per claim: measured 997 / 1,047 / 1,190 / 1,145 runs/s at 250 / 500 / 1,000 / 2,000 (bench/sync_throughput.py);
# a bigger batch amortises the round trips, a smaller one starts the fetch/apply overlap sooner.
BATCH_SIZE = 1000
# A provider that says "not found" this long is believed: the run is lost.
DEFAULT_LOST_AFTER = timedelta(minutes=10)
# A provider that keeps runs only in memory and does not know one: look once more after this, then believe it.
RECHECK_FORGETFUL = timedelta(seconds=4)
# No run stays in flight forever (ComfyDeploy itself gives up after 24 h).
DEFAULT_MAX_RUN_TIME = timedelta(hours=24)
MAX_BACKOFF = timedelta(minutes=15)
CRASH_DELAY = timedelta(minutes=5)
# A submission takes seconds; one still without a provider id after this never completed.
STALE_SUBMISSION = timedelta(minutes=10)


@dataclass
class SweepStats:
    claimed: int = 0
    changed: int = 0
    errors: int = 0
    lost: int = 0
    timed_out: int = 0
    batches: int = 0
    archived: int = 0
    graphs: int = 0
    by_status: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # Credentials already flagged in this sweep: one failing batch counts once towards the breaker.
    flagged: set[int] = field(default_factory=set)
    # Credentials with at least one answer in the batch being applied (apply_results sets it).
    answered: set[int] = field(default_factory=set)
    # Per credential with an answer in this sweep, the moment of the latest batch it answered in:
    # written once, at the sweep's end (record_answers).
    answered_at: dict[int, datetime] = field(default_factory=dict)
    # Per failing credential: (provider name, the first error's message), for people (sync_runs --once).
    failures: dict[int, tuple[str, str]] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"Synced {self.claimed} run(s) in {self.batches} batch(es): {self.changed} status change(s), "
            f"{self.errors} error(s), {self.timed_out} timed out, {self.lost} lost, "
            f"{self.archived} output(s) archived, {self.graphs} graph(s) fetched"
        )

    def failure_lines(self) -> list[str]:
        """One line per provider credential that failed in this sweep, with the reason."""
        return [f"{name}: {message}" for name, message in sorted(self.failures.values())]


def sync_due_runs(
    limit: int = BATCH_SIZE,
    now: datetime | None = None,
    max_seconds: float | None = None,
    *,
    archive: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> SweepStats:
    """Sweep every run that is due now, batch after batch; returns what happened.

    Runs due later than the sweep's start are left for the next sweep, so the loop always ends.
    With `archive`, the after-finish work follows: the graphs of finished tracked runs (runs.graphs),
    then the outputs due for archiving (the scheduled loops do both in the archive loop instead, so
    neither graph requests nor slow downloads ever delay status freshness). Once `should_stop()`
    says so (SIGTERM), the batch in hand is finished, no other is claimed and the leases of one
    already claimed are released. A sweep that fails releases the leases it still holds.
    """
    # Subscribers keep what they read (prices, whether an organization has rules) for the sweep (runs.per_sweep).
    with metrics.timed_sweep(), per_sweep.sweep_scope():
        return _sweep(limit, now, max_seconds, archive, should_stop)


def _sweep(
    limit: int,
    now: datetime | None,
    max_seconds: float | None,
    archive: bool,
    should_stop: Callable[[], bool] | None,
) -> SweepStats:
    start = now or timezone.now()
    stats = SweepStats()
    stats.lost += reconcile_stale_submissions(start)
    # Half-open breakers first: a credential that answers again has all its runs due in this sweep.
    probe_credentials(start, stats, apply_result, LEASE)
    clock = timezone.now()

    def stopping() -> bool:
        return should_stop is not None and should_stop()

    def out_of_time() -> bool:
        return stopping() or (max_seconds is not None and (timezone.now() - clock).total_seconds() > max_seconds)

    # Pipelined: while one batch's answers are applied here, the next batch is claimed and fetched (pure
    # HTTP, no database) on other threads, so the network wait, the claim and the writes overlap.
    held = Held()
    try:
        with Fetcher() as fetcher, Claims(fetcher, limit, start) as claims:
            runs, pending = held.claimed(claims.next())
            while runs:
                stats.batches += 1
                stats.claimed += len(runs)
                following = None if out_of_time() else claims.next()
                results = held.wait_for_answers(pending)
                metrics.count_answers(runs, results)
                # One commit per batch: per-run commits (WAL flushes) dominated the apply phase. Bulk writes
                # run in savepoints, and a failing batch falls back to run-by-run, so one bad run rolls back alone.
                with transaction.atomic():
                    apply_results(runs, results, stats, now=now)
                held.done(run.id for run in runs)
                if following is not None and stopping():
                    # Stopping: hand the next batch back unfetched, due again at once for whichever sweeper comes next.
                    held.release(run.id for run in held.claimed(following)[0])
                    following = None
                runs, pending = held.claimed(following) if following else ([], pending)
    except BaseException:
        held.release_all()
        raise
    finally:
        record_answers(stats.answered_at)
    if archive:
        stats.graphs = fetch_all_due_graphs(should_stop=should_stop)
        stats.archived = archive_all_due_outputs(should_stop=should_stop)
    return stats


class Held(Holder):
    """The runs a sweep has leased and not yet applied: their leases are renewed while the sweep waits
    for a claim or for the providers' answers, and released if the sweep stops or fails."""

    def __init__(self) -> None:
        super().__init__(LEASE)

    def claimed(self, future: Future[tuple[list[Run], Pending]]) -> tuple[list[Run], Pending]:
        runs, pending = self.wait(future)
        self.add(run.id for run in runs)
        return runs, pending

    def wait_for_answers(self, pending: Pending) -> dict[int, RunSnapshot | ProviderError]:
        if pending.future is not None:
            self.wait(pending.future)
        return pending.result()


class Claims:
    """Claims the sweep's batches and starts fetching each one as soon as it is claimed.

    On PostgreSQL, once a claim came back full (more runs are due), the next ones run on a thread of
    their own, with their own database connection, so a batch is leased while this thread still
    applies the one before (a claim costs about a fifth of a list-served sweep, too much to wait for).
    Otherwise, and inside a caller's transaction (whose uncommitted rows another connection could not
    see), they run inline.
    """

    def __init__(self, fetcher: Fetcher, limit: int, now: datetime) -> None:
        self.fetcher, self.limit, self.now = fetcher, limit, now
        self._may_thread = connection.vendor == "postgresql" and not connection.in_atomic_block
        self._pool: ThreadPoolExecutor | None = None
        self._last_full = False

    def __enter__(self) -> Claims:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            try:
                # Looked up on the claim thread (`connection` is per thread): its own connection is closed.
                self._pool.submit(lambda: connection.close()).result()
            finally:
                self._pool.shutdown()

    def next(self) -> Future[tuple[list[Run], Pending]]:
        """The next batch and its pending answers (call it again only once the last one is done)."""
        if self._pool is None and self._may_thread and self._last_full:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-claim")
        if self._pool is not None:
            return self._pool.submit(self._claim)
        future: Future[tuple[list[Run], Pending]] = Future()
        future.set_result(self._claim())
        return future

    def _claim(self) -> tuple[list[Run], Pending]:
        runs = claim_due_runs(self.limit, now=self.now)
        self._last_full = len(runs) == self.limit
        return runs, self.fetcher.start(runs)


def archive_all_due_outputs(should_stop: Callable[[], bool] | None = None, max_seconds: float | None = None) -> int:
    """Archive every output due now, batch after batch, until no batch is left (or `max_seconds` have
    passed, or `should_stop()` says so); returns how many were archived.

    A batch whose outputs all failed does not end it: each failure is scheduled for a later retry,
    so the next claim takes the outputs after them and the loop still ends.
    """
    # Outputs of runs that just finished are due now, not at a sweep's start: use the current time.
    cutoff = timezone.now()
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    total = 0
    while not (should_stop and should_stop()) and not (deadline and time.monotonic() > deadline):
        batch = archive_due_batch(now=cutoff)
        total += batch.archived
        if not batch.claimed:
            break
    return total


def reconcile_stale_submissions(now: datetime) -> int:
    """Runs whose submission never finished (the submitting process died between recording the run
    and hearing back from the provider) have no provider id to poll: after a while they are `lost`."""
    stale = Run.objects.filter(status=Status.PENDING, external_id="", created__lt=now - STALE_SUBMISSION)
    reason = (
        "The submission never completed (comfytrack stopped while sending it), so there is no provider id "
        "to follow; the run may or may not have started on the provider."
    )
    return sum(mark_status(run, Status.LOST, EventSource.RECONCILER, reason, now=now) for run in stale[:100])


def claim_due_runs(limit: int, now: datetime | None = None) -> list[Run]:
    """Lease up to `limit` due runs, with the columns the sweep reads (the rest load on first access).
    Two workers never get the same run while its lease lasts."""
    now = now or timezone.now()
    at = Run._meta.get_field("next_sync_after").get_db_prep_value(now, connection)
    order = f"t.{column(Run, 'next_sync_after')}"
    return with_accounts(
        LEASE.claim_where(_due_where(), [at, "", at], order_by=order, limit=limit, fields=SWEEP_FIELDS, now=now)
    )


@functools.cache
def _due_where() -> str:
    """Due, in flight, with a provider id, unleased at the moment given (twice), and not held back by its
    credential's open or half-open breaker (runs.breaker: those wait for the probe)."""
    run = functools.partial(column, Run)
    credential = connection.ops.quote_name(Credential._meta.db_table)
    # The statuses are written out, not bound: a generic plan could not tell that `status IN ($1, $2, $3)`
    # matches the partial index `runs_run_due`. They are the model's constants, never outside input.
    in_flight = ", ".join(f"'{Status(status).value}'" for status in IN_FLIGHT)
    return (
        f"t.{run('status')} IN ({in_flight}) AND t.{run('next_sync_after')} <= %s"  # noqa: S608 - metadata only
        f" AND t.{run('external_id')} <> %s"
        f" AND (t.{run('sync_locked_until')} IS NULL OR t.{run('sync_locked_until')} < %s)"
        f" AND NOT EXISTS (SELECT 1 FROM {credential} AS c "
        f"WHERE c.{column(Credential, 'id')} = t.{run('credential')}"
        f" AND c.{column(Credential, 'consecutive_failures')} > 0)"
    )


def apply_results(
    runs: list[Run], results: dict[int, RunSnapshot | ProviderError], stats: SweepStats, now: datetime | None = None
) -> None:
    """Apply a batch: every plain answer through one `apply_many`, the rest (errors, UNKNOWN) run by run.

    If the batch write fails as a whole, each run is applied on its own, so one bad run stalls nothing.
    """
    now = now or timezone.now()
    answered: list[tuple[Run, RunSnapshot]] = []
    answered_by: set[int] = set()
    for run in runs:
        if isinstance(result := results.get(run.id), RunSnapshot):
            if result.status != RunStatus.UNKNOWN:
                answered.append((run, result))
            if run.credential_id is not None:
                answered_by.add(run.credential_id)
    stats.answered = answered_by
    done: set[int] = set()
    if answered:
        items = [(run, snapshot, _bookkeeping(run, snapshot, now)) for run, snapshot in answered]
        try:
            # apply_many writes in a savepoint of its own: a failure rolls the batch back to it.
            changed = apply_many(items, EventSource.POLL, now)
        except Exception:
            logger.exception("applying a batch of %d runs failed; applying them one by one", len(items))
            for run, _ in answered:
                run.refresh_from_db()
        else:
            ok_credentials: set[int] = set()
            for (run, _), did_change in zip(answered, changed, strict=True):
                done.add(run.id)
                _after_answer(run, did_change, stats, now, ok_credentials)
    for run in runs:
        if run.id not in done:
            apply_result(run, results.get(run.id), stats, now=now)
    stats.answered = set()
    stats.answered_at.update(dict.fromkeys(answered_by, now))


def record_answers(answered_at: dict[int, datetime]) -> None:
    """Health is the latest outcome per credential (the providers page): each credential's last good
    answer is written once per sweep, one UPDATE per distinct moment (batches of one sweep share few),
    never moving `last_ok` back. A failure meanwhile (`Credential.mark_failed`) is written at once, so
    an answer before it still reads as older; the page lags the sweep by at most its length."""
    by_moment: dict[datetime, list[int]] = defaultdict(list)
    for credential_id, moment in answered_at.items():
        by_moment[moment].append(credential_id)
    try:
        for moment, ids in by_moment.items():
            Credential.objects.filter(Q(last_ok=None) | Q(last_ok__lt=moment), pk__in=ids).update(last_ok=moment)
    except Exception:
        # After a failed sweep the connection may be what broke: the next sweep's answers record it.
        logger.warning("could not record the last good answer of %d credential(s)", len(answered_at))


def _after_answer(run: Run, did_change: bool, stats: SweepStats, now: datetime, ok_credentials: set[int]) -> None:
    """What follows a batch-applied answer, with the same crash guard as apply_result.

    Usually there is nothing left to write (the bookkeeping rode along with the batch UPDATE), and then
    no savepoint is opened either: two round trips per run would be most of the apply phase's cost.
    """
    stats.changed += did_change
    stats.by_status[run.status] += 1
    credential = run.credential
    credential_recovers = bool(
        credential
        and credential.pk not in ok_credentials
        and (credential.consecutive_failures or credential.failing_since)
    )
    if credential:
        ok_credentials.add(credential.pk)
    if run.last_synced == now and not credential_recovers and not _over_time_limit(run, now):
        return
    try:
        with transaction.atomic():
            if run.last_synced != now:
                _finish(run, now, error="", failures=0)  # the race was lost: record the attempt alone
            if credential is not None and credential_recovers:
                credential.mark_ok(now)
            _enforce_time_limit(run, stats, now)
    except Exception:
        _crash_guard(run, now)


def apply_result(
    run: Run, result: RunSnapshot | ProviderError | None, stats: SweepStats, now: datetime | None = None
) -> None:
    """Apply one answer and schedule the next poll; never raises (a crash guard: one bad run must not stall the sweep).

    `now` defaults to the current time; sweeps run with an explicit `now` (tests, replays) use it throughout.
    """
    now = now or timezone.now()
    try:
        with transaction.atomic():
            if isinstance(result, RunSnapshot):
                _apply_snapshot(run, result, stats, now)
            else:
                _apply_error(run, result or ProviderError("No answer for this run."), stats, now)
            _enforce_time_limit(run, stats, now)
    except Exception:
        _crash_guard(run, now)


def _crash_guard(run: Run, now: datetime) -> None:
    logger.exception("sync of run %s failed", run.code)
    Run.objects.filter(pk=run.pk).update(
        next_sync_after=now + CRASH_DELAY, sync_locked_until=None, last_sync_error="Internal error while syncing."
    )


def _apply_snapshot(run: Run, snapshot: RunSnapshot, stats: SweepStats, now: datetime) -> None:
    delay = None
    if snapshot.status == RunStatus.UNKNOWN:
        if run.cancel_requested:
            # A pending ComfyUI prompt we deleted from the queue leaves no history: cancelled.
            reason = "Cancelled from comfytrack; the provider removed it from its queue."
            if mark_status(run, Status.CANCELLED, EventSource.RECONCILER, reason, now=now):
                stats.changed += 1
        elif run.unknown_since and now >= (run.lost_at or run.unknown_since + lost_after(run)):
            # Only after a second answer: one "unknown" may be a race (a run moving from queue to history).
            if mark_status(
                run, Status.LOST, EventSource.RECONCILER, f"{run.provider.name} no longer knows this run.", now=now
            ):
                stats.lost += 1
        else:
            unknown_since = run.unknown_since or now
            lost_at = run.lost_at or unknown_since + lost_after(run)
            Run.objects.filter(pk=run.pk).update(unknown_since=unknown_since, lost_at=lost_at)
            run.unknown_since, run.lost_at = unknown_since, lost_at
            # Look again no later than the moment it would be marked lost.
            delay = min(cadence(run, now), max(lost_at - now, timedelta(seconds=1)))
    elif apply_snapshot(run, snapshot, EventSource.POLL, now=now, extra=_bookkeeping(run, snapshot, now)):
        stats.changed += 1
    stats.by_status[run.status] += 1
    if run.last_synced != now:
        # Nothing rode along with apply (UNKNOWN, or another worker won the race): record the attempt.
        _finish(run, now, error="", failures=0, delay=delay)
    if run.credential:
        run.credential.mark_ok(now)  # it answered: the latest outcome is a success


def _apply_error(run: Run, error: ProviderError, stats: SweepStats, now: datetime) -> None:
    stats.errors += 1
    failures = run.sync_failures + 1
    # A transient error on some runs while others of the same credential were answered in this batch
    # (one slow request, say) is those runs' alone; when none was answered, the provider is the problem.
    answered_anyway = run.credential_id in stats.answered and not (error.retry_after or error.auth_failed)
    if run.credential and counts_against_credential(error) and not answered_anyway:
        if run.credential.pk not in stats.flagged:
            stats.flagged.add(run.credential.pk)
            _flag_credential(run.credential, error, now)
        stats.failures.setdefault(run.credential.pk, (run.provider.name, error.message))
        # The credential's breaker holds the run back until its probe succeeds (runs.breaker), which then
        # makes it due at once: no back-off of its own, so no run lags behind the others.
        delay = cadence(run, now)
    else:
        stats.failures.setdefault(-run.provider_id, (run.provider.name, error.message))
        delay = poll_retry_delay(failures, error.retry_after)
    _finish(run, now, error=error.message[:2000], failures=failures, delay=delay)


def _flag_credential(credential: Credential, error: ProviderError, now: datetime) -> None:
    # Once per credential per sweep: the first of its runs to fail flags it; the rest see it blocked.
    if credential.blocked_until and credential.blocked_until > now:
        return
    credential.mark_failed(error.message, permanent=error.auth_failed, retry_after=error.retry_after, now=now)


def _bookkeeping(run: Run, snapshot: RunSnapshot, now: datetime) -> dict:
    """The attempt's record for a successful answer, written by apply_snapshot in the run's own UPDATE."""
    status = snapshot.status.value if allowed_transition(run.status, snapshot.status.value) else run.status
    next_sync = None if status in TERMINAL else now + cadence_for(status, run.created, now)
    return {
        "last_synced": now,
        "last_sync_error": "",
        "sync_failures": 0,
        "next_sync_after": next_sync,
        "sync_locked_until": None,
    }


def _finish(run: Run, now: datetime, *, error: str, failures: int, delay: timedelta | None = None) -> None:
    """One UPDATE records the attempt, schedules the next one and releases the lease."""
    next_sync = None if run.is_finished else now + (delay or cadence(run, now))
    Run.objects.filter(pk=run.pk).update(
        last_synced=now,
        last_sync_error=error,
        sync_failures=failures,
        next_sync_after=next_sync,
        sync_locked_until=None,
    )
    run.last_synced, run.last_sync_error, run.sync_failures, run.next_sync_after = now, error, failures, next_sync


def _over_time_limit(run: Run, now: datetime) -> bool:
    return not run.is_finished and now - run.created >= max_run_time(run)


def _enforce_time_limit(run: Run, stats: SweepStats, now: datetime) -> None:
    if _over_time_limit(run, now):
        hours = max_run_time(run).total_seconds() / 3600
        reason = f"Still {run.status} after {hours:g} h: comfytrack gave up waiting (limit for {run.provider.name})."
        if mark_status(run, Status.TIMED_OUT, EventSource.RECONCILER, reason, now=now):
            stats.timed_out += 1
            Run.objects.filter(pk=run.pk).update(next_sync_after=None)
            run.next_sync_after = None


def cadence(run: Run, now: datetime) -> timedelta:
    return cadence_for(run.status, run.created, now)


def cadence_for(status: str, created: datetime, now: datetime) -> timedelta:
    """How soon to poll again: fast while running, slower the longer a run waits in a queue."""
    if status == Status.RUNNING:
        seconds = 4.0
    else:
        waited = (now - created).total_seconds()
        seconds = 4.0 if waited < 120 else min(4.0 + waited / 60, 60.0)
    return timedelta(seconds=seconds * random.uniform(0.8, 1.2))


def poll_retry_delay(failures: int, retry_after: float | None = None) -> timedelta:
    """After `failures` failed polls: 5 s · 2^failures, at most MAX_BACKOFF, never sooner than Retry-After."""
    return net.backoff(failures, base=5.0, cap=MAX_BACKOFF.total_seconds(), not_before=retry_after or 0.0)


def lost_after(run: Run) -> timedelta:
    """How long a provider may not know a run before it is `lost`: the provider's `lost_after_minutes`;
    by default, for providers that keep runs only in memory (a restarted ComfyUI has forgotten them, and
    nowhere else holds them), the one re-check; for the others, DEFAULT_LOST_AFTER."""
    minutes = _config_number(run, "lost_after_minutes")
    if minutes is not None:
        return timedelta(minutes=minutes)
    return RECHECK_FORGETFUL if run.provider.client_class.forgets_runs_on_restart else DEFAULT_LOST_AFTER


def max_run_time(run: Run) -> timedelta:
    hours = _config_number(run, "max_run_hours")
    return timedelta(hours=hours) if hours is not None else DEFAULT_MAX_RUN_TIME


def _config_number(run: Run, key: str) -> float | None:
    value = (run.provider.config or {}).get(key)
    try:
        return float(value) if value is not None and float(value) > 0 else None
    except (TypeError, ValueError):
        return None
