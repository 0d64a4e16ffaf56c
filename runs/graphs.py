"""The graph pass: ask the providers for the graphs of finished tracked runs, apart from the status sweep.

A run registered by id (`origin=tracked`) whose status answer left its graph out (a list call's entries
do; Comfy API v2 serves it apart) is marked due by the status write that finishes it (`Run.graph_due`,
set by `Run.snapshot_fields`); this pass asks for it later, so the status sweep never waits on it.

1. `claim_due_graphs` leases a batch of due runs by pushing `graph_due` forward, in one short
   transaction (`comfytrack.leases`).
2. `fetch_graphs` groups them by provider + credential and calls each client's `fetch_workflow`
   (one client per credential, at most `client.options.fetch_concurrency` at a time) on a thread and
   event loop of its own, outside any transaction, while this thread renews the leases.
3. `record_graphs` writes the batch in one transaction: each arrived graph becomes the run's workflow,
   fingerprint and search text (the same fields as a graph in a status answer,
   `Run.provider_graph_fields`), guarded so a run is fingerprinted once; an answer that there is no
   graph (404, not API format) or a permanent error stops asking; a transient error is asked again
   after `comfytrack.net.backoff`, at most MAX_ATTEMPTS times. The arrivals go to the run-change hook
   (`RunChange.graph_arrived`) in that transaction.

Plain module, no django-q2 imports: the archive loop runs it before each archive pass (runs.tasks).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from comfytrack import net
from comfytrack.leases import Holder, Lease
from providers.clients.base import ProviderClient, ProviderError
from providers.clients.event_loop import new_event_loop
from providers.crypto import SecretUnreadable
from runs import changes as run_changes
from runs.bulk import update_where
from runs.fetching import as_provider_error, client_options, with_accounts
from runs.models import Run

logger = logging.getLogger("runs.graphs")

BATCH_SIZE = 500
# A batch's requests end after this long (or when the pass's own time is up, if sooner), however slow
# the provider: a stalled one must not hold the loop past its pass (each request has its own timeout
# too, but 500 of them, 64 at a time, add up).
# The runs not answered by then are asked again after a back-off.
BATCH_SECONDS = 30.0
# A claimed run is held for 60 s and renewed every 15 s while its batch is asked: a worker that dies
# leaves its runs to the next pass within a minute.
LEASE = Lease(Run, "graph_due", timedelta(seconds=60), renew_every=15.0)
# A transient failure is asked again after 1 min, doubling up to 6 h; after this many attempts the run
# stays without a graph (a run's graph is worth a few tries, not a day of them).
MAX_ATTEMPTS = 8
FIRST_RETRY = 60.0
MAX_RETRY = timedelta(hours=6)
# What the pass reads of a run (`.only()`): the graph itself is what it is about to write.
GRAPH_FIELDS = (
    "id",
    "code",
    "organization",
    "provider",
    "credential",
    "external_id",
    "status",
    "origin",
    "workflow_fingerprint",
    "graph_due",
    "graph_attempts",
)

Answer = dict[str, Any] | None | ProviderError
GroupKey = tuple[int, int | None]


@dataclass(frozen=True)
class GraphOutcome:
    claimed: int = 0
    arrived: int = 0


def fetch_due_graphs(
    limit: int = BATCH_SIZE, now: datetime | None = None, max_seconds: float | None = None
) -> GraphOutcome:
    """Claim up to `limit` runs whose graph is due, ask for it (for at most `max_seconds`, BATCH_SECONDS
    at most), record the answers. Never raises."""
    try:
        runs = claim_due_graphs(limit, now=now)
    except Exception:
        logger.exception("claiming runs whose graph is due failed")
        return GraphOutcome()
    if not runs:
        return GraphOutcome()
    held = Holder(LEASE, (run.id for run in runs))
    attempts = {run.id: run.graph_attempts for run in runs}  # as claimed: recording sets them on the runs
    try:
        answers = fetch_graphs(runs, held, max_seconds)
        arrived = record_graphs(runs, answers)
    except Exception:
        logger.exception("a graph batch of %d runs failed; each counts an attempt and is asked again later", len(runs))
        count_failed_attempt(attempts)
        return GraphOutcome(len(runs), 0)
    held.done(run.id for run in runs)
    return GraphOutcome(len(runs), arrived)


def fetch_all_due_graphs(should_stop: Callable[[], bool] | None = None, max_seconds: float | None = None) -> int:
    """Ask for every graph due now, batch after batch, until none is left (or `max_seconds` have passed,
    or `should_stop()` says so); returns how many graphs arrived. A failure is scheduled for later, so
    the next claim takes other runs and the loop ends."""
    cutoff = timezone.now()
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    total = 0
    while not (should_stop and should_stop()) and not (deadline and time.monotonic() > deadline):
        left = None if deadline is None else max(deadline - time.monotonic(), 1.0)
        batch = fetch_due_graphs(now=cutoff, max_seconds=left)
        total += batch.arrived
        if not batch.claimed:
            break
    return total


def claim_due_graphs(limit: int, now: datetime | None = None) -> list[Run]:
    """Lease up to `limit` runs whose graph is due; two workers never ask for the same one while it lasts."""
    now = now or timezone.now()
    due = (
        Run.objects.filter(graph_due__lte=now)
        # A credential whose breaker is open or half-open: its runs wait, as in the status sweep (runs.breaker).
        .exclude(credential__consecutive_failures__gt=0)
        .order_by("graph_due")
        .only(*GRAPH_FIELDS)
    )
    return with_accounts(LEASE.claim(due, limit, now=now))


# -- asking (HTTP on a thread of its own, no database there) ------------------------------------------


def fetch_graphs(runs: list[Run], held: Holder | None = None, max_seconds: float | None = None) -> dict[int, Answer]:
    """Each run's graph, None (the provider has none for it) or the error; clients are built here, on the
    database thread (a credential's secret is decrypted), the requests on another."""
    by_key: dict[GroupKey, list[Run]] = defaultdict(list)
    for run in runs:
        by_key[(run.provider_id, run.credential_id)].append(run)
    answers: dict[int, Answer] = {}
    groups: list[tuple[ProviderClient, list[Run]]] = []
    for group in by_key.values():
        provider = group[0].provider
        if not provider.client_class.fetches_workflows():
            answers.update(dict.fromkeys((run.id for run in group), None))  # no such call: nothing to ask
            continue
        try:
            client = provider.client(group[0].credential, options=client_options(provider))
        except (ProviderError, SecretUnreadable) as exc:
            answers.update(dict.fromkeys((run.id for run in group), as_provider_error(exc)))
            continue
        groups.append((client, group))
    if groups:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="graph-fetch") as pool:
            seconds = min(BATCH_SECONDS, max_seconds or BATCH_SECONDS)
            future: Future[dict[int, Answer]] = pool.submit(_run, _fetch_groups(groups, seconds))
            fetched: dict[int, Answer] = held.wait(future) if held is not None else future.result()
        answers.update(fetched)
    return answers


def _run(coroutine) -> dict[int, Answer]:
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coroutine)


async def _fetch_groups(groups: list[tuple[ProviderClient, list[Run]]], seconds: float) -> dict[int, Answer]:
    merged: dict[int, Answer] = {}
    for part in await asyncio.gather(*(_fetch_group(client, group, seconds) for client, group in groups)):
        merged.update(part)
    return merged


async def _fetch_group(client: ProviderClient, runs: list[Run], seconds: float) -> dict[int, Answer]:
    limit = asyncio.Semaphore(client.options.fetch_concurrency)
    answers: dict[int, Answer] = {}

    async def one(run: Run) -> None:
        async with limit:
            try:
                graph = await client.fetch_workflow(run.external_id)
            except ProviderError as exc:
                answers[run.id] = exc
                return
            except Exception as exc:
                logger.exception("client %s failed to fetch a workflow", type(client).__name__)
                answers[run.id] = ProviderError(f"Unexpected error in the {client.label} client: {type(exc).__name__}.")
                return
        answers[run.id] = None if graph is None else dict(graph)

    unanswered = ProviderError(f"{client.label} did not answer within {seconds:g} s.")
    try:
        async with client:
            async with asyncio.timeout(seconds):
                await asyncio.gather(*(one(run) for run in runs))
    except TimeoutError:
        logger.warning(
            "%s: %d graph request(s) still unanswered after %g s", client.label, len(runs) - len(answers), seconds
        )
    except ProviderError as exc:  # opening or closing the client's session
        unanswered = exc
    return {run.id: answers.get(run.id, unanswered) for run in runs}


# -- recording (one transaction, no HTTP) -------------------------------------------------------------


def record_graphs(runs: list[Run], answers: dict[int, Answer], now: datetime | None = None) -> int:
    """Write a batch's answers in one transaction; returns how many graphs arrived."""
    now = now or timezone.now()
    arrived: list[tuple[Run, dict[str, Any]]] = []
    settled: list[tuple[Run, int, datetime | None]] = []  # (run, attempts, next try or None: stop)
    for run in runs:
        answer = answers.get(run.id, ProviderError("The graph request did not run."))
        attempts = run.graph_attempts + 1
        fields = run.provider_graph_fields(answer) if isinstance(answer, dict) else {}
        if fields:
            arrived.append((run, {**fields, "graph_attempts": attempts}))
        elif not isinstance(answer, ProviderError) or (answer.permanent and not answer.auth_failed):
            # No graph there (404), one comfytrack cannot read, or a call the provider refuses for good.
            settled.append((run, attempts, None))
        else:
            due = next_try(attempts, now, answer.retry_after)
            if due is None:
                logger.warning("gave up asking for the graph of run %s: %s", run.code, answer.message)
            settled.append((run, attempts, due))
    with transaction.atomic():
        written = _write_arrivals(arrived)
        # Guarded like the arrivals: a run that got its fingerprint meanwhile keeps it, with nothing due.
        update_where(
            Run,
            ("graph_attempts", "graph_due"),
            [(run.id, "", (attempts, due)) for run, attempts, due in settled],
            guard="workflow_fingerprint",
        )
        changes = []
        for run, fields in arrived:
            if run.id in written:
                for name, value in fields.items():
                    setattr(run, name, value)
                changes.append(run_changes.RunChange(run, run.status, False, graph_arrived=True))
        run_changes.announce(changes)
    return len(changes)


def count_failed_attempt(attempts: dict[int, int], now: datetime | None = None) -> None:
    """A batch that could not be recorded (a bug, a run-change subscriber that raises): each run counts
    the attempt and backs off like a transient error, so a batch that always fails stops after
    MAX_ATTEMPTS instead of being claimed again every time its lease lapses. `attempts`: each claimed
    run's attempts before this one (recording sets the new count on the runs it was given). Never raises."""
    now = now or timezone.now()
    rows = [(pk, "", (before + 1, next_try(before + 1, now))) for pk, before in attempts.items()]
    try:
        update_where(Run, ("graph_attempts", "graph_due"), rows, guard="workflow_fingerprint")
    except Exception:
        logger.exception("counting the failed attempt of %d runs failed; their lease lapses instead", len(rows))


def _write_arrivals(arrived: list[tuple[Run, dict[str, Any]]]) -> set[int]:
    """One statement for the batch's graphs, where the run has no fingerprint yet; returns the pks written."""
    if not arrived:
        return set()
    names = tuple(arrived[0][1])
    rows = [(run.id, "", [fields[name] for name in names]) for run, fields in arrived]
    return update_where(Run, names, rows, guard="workflow_fingerprint")


def next_try(attempts: int, now: datetime, retry_after: float | None = None) -> datetime | None:
    """When to ask again after `attempts` failed requests: 1 min · 2^(attempts-1) from `now`, at most
    MAX_RETRY, never before Retry-After; None once MAX_ATTEMPTS have failed (stop asking)."""
    if attempts >= MAX_ATTEMPTS:
        return None
    cap = MAX_RETRY.total_seconds()
    return now + net.backoff(attempts - 1, base=FIRST_RETRY, cap=cap, not_before=retry_after or 0.0)
