"""The run-change hook: what other apps use to react to run status changes, new outputs and graphs.

Every status change and every new output goes through `runs.applying.apply_many` (the sync sweep's
batches, `apply_snapshot`, `mark_status`, inbound provider webhooks). At the end of that function, still
inside its transaction, the batch's changes are handed to every subscriber. The graph pass
(`runs.graphs`) announces the finished tracked runs whose graph (and so fingerprint) arrived after their
status, in the transaction that writes it (`RunChange.graph_arrived`). A subscriber writes its
own rows (webhook deliveries, alerts) through the same connection, so they commit or roll back
together with the change that caused them: a committed change always has its events, a rolled-back
one has none (a transactional outbox; docs/background-work.md).

Subscribe once, from your AppConfig.ready, so the engine never imports its subscribers:

    from runs.changes import RunChange, on_run_changes

    class AlertsConfig(AppConfig):
        name = "alerts"

        def ready(self):
            on_run_changes(record_alerts)

    def record_alerts(changes: Sequence[RunChange]) -> None:
        failed = [c for c in changes if c.status_changed and c.run.status == "failed"]
        Alert.objects.bulk_create(Alert(run_id=c.run.id, ...) for c in failed)

Rules for subscribers:
- Do database work only, no network calls: the rows they write are picked up and sent later by a
  loop of their own (webhooks.delivery), outside the sweep.
- Cost should be a query or two per batch (a batch holds up to 1,000 runs), not per change; what does
  not change from batch to batch can be read once per sweep (`runs.per_sweep.kept`).
- Raising rolls back the whole change (the sweep then retries the runs one by one, and a run that
  still fails is retried later). Never swallow an error to keep going: that is how events get lost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from runs.models import Run


@dataclass(frozen=True)
class RunChange:
    """One run's change in a batch: the run as written, and what changed."""

    run: Run
    old_status: str
    status_changed: bool
    # The provider keys of the outputs that were new in this change (RunOutput.key).
    new_output_keys: tuple[str, ...] = ()
    # A finished tracked run's graph arrived (runs.graphs), after its status: the run now has its
    # workflow and `workflow_fingerprint`, and its status did not change.
    graph_arrived: bool = False


RunChangeSubscriber = Callable[[Sequence[RunChange]], object]  # what it returns is not used

_subscribers: list[RunChangeSubscriber] = []


def on_run_changes(subscriber: RunChangeSubscriber) -> RunChangeSubscriber:
    """Call `subscriber(changes)` inside the transaction of every batch of run changes.

    Registering the same function twice has no effect (AppConfig.ready may run more than once).
    Returns the subscriber, so it also works as a decorator.
    """
    if subscriber not in _subscribers:
        _subscribers.append(subscriber)
    return subscriber


def remove_subscriber(subscriber: RunChangeSubscriber) -> None:
    """Stop calling `subscriber` (tests)."""
    if subscriber in _subscribers:
        _subscribers.remove(subscriber)


def announce(changes: Sequence[RunChange]) -> None:
    """Hand a batch to every subscriber; called by runs.applying inside the change's transaction."""
    if not changes:
        return
    for subscriber in tuple(_subscribers):
        subscriber(changes)


class Finishing(Protocol):
    """A run about to reach a terminal status, before its UPDATE is written (runs.applying)."""

    @property
    def run(self) -> Run:
        """The run as it was read (its status is still the old one)."""

    @property
    def changes(self) -> dict[str, Any]:
        """The columns its UPDATE writes (status, times, …); a subscriber may add columns of its own."""


FinishingSubscriber = Callable[[Sequence[Finishing]], object]

_finishing: list[FinishingSubscriber] = []


def on_runs_finishing(subscriber: FinishingSubscriber) -> FinishingSubscriber:
    """Call `subscriber(finishing)` with a batch's runs about to finish, before their UPDATE: the columns it
    adds to each one's `changes` are written by that same statement (a run's cost), or not at all when
    another writer changed the run first. Database reads only; same registration rules as `on_run_changes`.
    """
    if subscriber not in _finishing:
        _finishing.append(subscriber)
    return subscriber


def announce_finishing(finishing: Sequence[Finishing]) -> None:
    """Hand the runs about to finish to every finishing subscriber; called by runs.applying."""
    if not finishing:
        return
    for subscriber in tuple(_finishing):
        subscriber(finishing)
