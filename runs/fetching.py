"""Asking the providers about a batch of runs: pure HTTP on a thread of its own (no database there).

A `Fetcher` lives for one sweep. Its thread keeps one event loop, and each (provider, credential)
keeps one open client across the sweep's batches, so connections are reused instead of opened
again for every batch (a fresh pool per batch cost ~1,300 TCP handshakes per 10,000 runs).
Clients are built on the caller's thread, which owns the database connection (a run without a
credential looks one up, and secrets are decrypted there).

Statuses only: the graph of a tracked run whose answer left it out is asked for by the graph pass
(runs.graphs), apart from the sweep, so status freshness never waits on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from providers.clients.base import ClientOptions, ProviderClient, ProviderError, RunSnapshot
from providers.clients.event_loop import new_event_loop
from providers.crypto import SecretUnreadable
from providers.models import Credential, Provider

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
        missing = ProviderError("The provider's answer did not include this run.")
        return {run.id: answers.get(external_id, missing) for external_id, run in by_external.items()}


def with_accounts(runs: list[Run]) -> list[Run]:
    """The claimed runs with their provider and credential set. A batch shares a few of each: each is
    loaded once, not once per run."""
    providers = Provider.objects.in_bulk({run.provider_id for run in runs})
    credentials = Credential.objects.in_bulk({run.credential_id for run in runs} - {None})
    for run in runs:
        run.provider = providers[run.provider_id]
        if run.credential_id is not None:
            # None when deleted meanwhile: the run then uses the provider's default credential.
            run.credential = credentials.get(run.credential_id)
    return runs


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
