"""Reads kept for the length of a sweep: what run-change subscribers would otherwise read for every
batch (a provider's prices, whether an organization has alert rules or webhook endpoints).

The sync sweep runs its batches inside `sweep_scope()`; a subscriber asks `kept(name, factory)` for its
store (a dict or set it fills itself) and reads only what the store does not hold yet. Outside a sweep
(a single poll, an inbound webhook, a test) every call gets a new, empty store, so every read happens.

Staleness: a store is emptied once it is `MAX_AGE` old, so a sweep acts on what was true at most
`MAX_AGE` ago (a scheduled pass claims for at most 10 s anyway, runs.tasks). What a subscriber keeps is
its own choice, and its docstring says what a change made meanwhile means for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

MAX_AGE = 10.0  # seconds


class _Scope:
    def __init__(self) -> None:
        self.stores: dict[str, Any] = {}
        self.started = time.monotonic()

    def store[T](self, name: str, factory: Callable[[], T]) -> T:
        if time.monotonic() - self.started > MAX_AGE:
            self.stores.clear()
            self.started = time.monotonic()
        if name not in self.stores:
            self.stores[name] = factory()
        return self.stores[name]


# Per thread (and per asyncio task): a sweep's batches are applied on the thread that runs the sweep.
_scope: ContextVar[_Scope | None] = ContextVar("runs_per_sweep_scope", default=None)


@contextmanager
def sweep_scope() -> Iterator[None]:
    """Keep subscribers' reads until the block ends (or `MAX_AGE` passes). Nested scopes share the outer one."""
    if _scope.get() is not None:
        yield
        return
    token = _scope.set(_Scope())
    try:
        yield
    finally:
        _scope.reset(token)


def kept[T](name: str, factory: Callable[[], T]) -> T:
    """The store `name` of the current sweep (made by `factory()` on first use); outside a sweep, a new one."""
    scope = _scope.get()
    return factory() if scope is None else scope.store(name, factory)
