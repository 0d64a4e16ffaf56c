"""Asking the providers about a batch of runs: pure HTTP on a thread of its own (no database there).

A `Fetcher` lives for one sweep. Its thread keeps one event loop, and each (provider, credential)
keeps one open client across the sweep's batches, so connections are reused instead of opened
again for every batch (a fresh pool per batch cost ~1,300 TCP handshakes per 10,000 runs).
Clients are built on the caller's thread, which owns the database connection (a run without a
credential looks one up, and secrets are decrypted there).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from providers.clients.base import ClientOptions, ProviderClient, ProviderError, RunSnapshot, RunStatus
from providers.clients.event_loop import new_event_loop
from providers.crypto import SecretUnreadable

if TYPE_CHECKING:
    from runs.models import Run

logger = logging.getLogger("runs.sync")

Answers = dict[int, RunSnapshot | ProviderError]
GroupKey = tuple[int, int | None]


class Pending:
    """A batch's answers: those known before any HTTP (client errors) plus a future for the rest."""

    def __init__(self, early: Answers, future: Future | None) -> None:
        self.early, self.future = early, future

    def result(self) -> Answers:
        return {**self.early, **(self.future.result() if self.future else {})}


class Fetcher:
    """Use as a context manager; `start(runs)` returns at once, `Pending.result()` waits for the answers."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-fetch")
        self._runner: asyncio.Runner | None = None  # created and used on the pool's one thread only
        self._clients: dict[GroupKey, ProviderClient] = {}
        self._opened: set[GroupKey] = set()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._pool.submit(self._close_on_thread).result()
        finally:
            self._pool.shutdown()

    def start(self, runs: list[Run]) -> Pending:
        groups, early = self._prepare(runs)
        if not groups:
            return Pending(early, None)
        return Pending(early, self._pool.submit(self._run_on_thread, self._fetch_groups(groups)))

    def fetch(self, runs: list[Run]) -> Answers:
        return self.start(runs).result()

    # -- the caller's (database) thread --------------------------------------------------------

    def _prepare(self, runs: list[Run]) -> tuple[list[tuple[GroupKey, list[Run]]], Answers]:
        """Group the runs by (provider, credential); a group that cannot have a client gets its error."""
        by_key: dict[GroupKey, list[Run]] = defaultdict(list)
        for run in runs:
            by_key[(run.provider_id, run.credential_id)].append(run)
        groups: list[tuple[GroupKey, list[Run]]] = []
        early: Answers = {}
        for key, group in by_key.items():
            if key not in self._clients:
                try:
                    provider = group[0].provider
                    self._clients[key] = provider.client(group[0].credential, options=client_options(provider))
                except (ProviderError, SecretUnreadable) as exc:
                    early.update(dict.fromkeys((run.id for run in group), as_provider_error(exc)))
                    continue
            groups.append((key, group))
        return groups, early

    # -- the fetch thread ----------------------------------------------------------------------

    def _run_on_thread(self, coroutine) -> Answers:
        if self._runner is None:
            self._runner = asyncio.Runner(loop_factory=new_event_loop)
        return self._runner.run(coroutine)

    def _close_on_thread(self) -> None:
        if self._runner is None:
            return
        try:
            self._runner.run(self._close_clients())
        finally:
            self._runner.close()

    async def _close_clients(self) -> None:
        for key in list(self._opened):
            try:
                await self._clients[key].__aexit__(None, None, None)
            except Exception:
                logger.exception("closing the %s client failed", type(self._clients[key]).__name__)
        self._opened.clear()

    async def _fetch_groups(self, groups: list[tuple[GroupKey, list[Run]]]) -> Answers:
        merged: Answers = {}
        for part in await asyncio.gather(*(self._fetch_group(key, group) for key, group in groups)):
            merged.update(part)
        return merged

    async def _fetch_group(self, key: GroupKey, group: list[Run]) -> Answers:
        client = self._clients[key]
        by_external = {run.external_id: run for run in group}
        try:
            if key not in self._opened:
                await client.__aenter__()
                self._opened.add(key)
            answers = await client.fetch_many(list(by_external))
        except ProviderError as exc:
            return {run.id: exc for run in group}
        except Exception as exc:
            logger.exception("client %s failed on a batch", type(client).__name__)
            error = ProviderError(f"Unexpected error in the {client.label} client: {type(exc).__name__}.")
            return {run.id: error for run in group}
        await add_workflows(client, answers, by_external)
        missing = ProviderError("The provider's answer did not include this run.")
        return {run.id: answers.get(external_id, missing) for external_id, run in by_external.items()}


async def add_workflows(
    client: ProviderClient, answers: dict[str, RunSnapshot | ProviderError], runs: dict[str, Run]
) -> None:
    """Runs registered by id that finish in this answer without their graph (a list call's entries leave
    it out; Comfy API v2 serves it apart): ask for it once, where the provider has a call for it
    (`ProviderClient.fetch_workflow`). Once per run, since a finished run is not polled again, and never
    for a submitted run, which has its workflow. A failed request leaves the run without a fingerprint;
    the status answer is applied all the same."""
    wanted = [
        external_id
        for external_id, answer in answers.items()
        if isinstance(answer, RunSnapshot)
        and answer.workflow is None
        and answer.status.is_terminal
        and answer.status is not RunStatus.LOST
        and (run := runs.get(external_id)) is not None
        and run.wants_provider_graph
        and not run.is_finished
    ]
    if not wanted:
        return
    limit = asyncio.Semaphore(client.options.fetch_concurrency)

    async def one(external_id: str) -> None:
        async with limit:
            try:
                graph = await client.fetch_workflow(external_id)
            except ProviderError:
                return
            except Exception:
                logger.exception("client %s failed to fetch a workflow", type(client).__name__)
                return
        snapshot = answers[external_id]
        if graph is not None and isinstance(snapshot, RunSnapshot):
            answers[external_id] = dataclasses.replace(snapshot, workflow=graph)

    await asyncio.gather(*(one(i) for i in wanted))


def as_provider_error(exc: ProviderError | SecretUnreadable) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    return ProviderError(str(exc), permanent=True, auth_failed=True)  # a secret we cannot decrypt


def fetch_batch(runs: list[Run]) -> Answers:
    """Ask every provider about these runs once: one `fetch_many` per credential, all concurrently."""
    with Fetcher() as fetcher:
        return fetcher.fetch(runs)


def client_options(provider) -> ClientOptions:
    """Per-provider HTTP options: `config["timeout_seconds"]` shortens (or lengthens) the request timeout."""
    options = ClientOptions()
    value = (provider.config or {}).get("timeout_seconds")
    try:
        if value is not None and float(value) > 0:
            options.timeout = min(float(value), 120.0)
    except (TypeError, ValueError):
        pass
    return options
