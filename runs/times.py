"""A run's timeline: which of its times the provider reported and which comfytrack only observed.

Each of `created`, `queued`, `started` and `finished` has a source column (`<name>_source`):
`provider` when the time is the provider's own, `observed` when comfytrack stood in for it (the poll
that first saw the run running, the moment a submission was accepted, the moment tracking began),
empty when the time is empty. The rules (docs/api.md "Times"):

- a provider time always wins: it replaces an observed one whenever it arrives, and is kept once set
  (answers from different calls of one provider round the same moment differently);
- the timeline is ordered, created ≤ queued ≤ started ≤ finished: an observed time that would break
  the order is moved onto its provider neighbour (a poll lags the provider's clock, so the observation
  is the one that is off);
- a tracked run's `created` is the earliest time the provider reported for it;
- `lost` gets no finish time: comfytrack never saw the run end.
"""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from operator import attrgetter
from typing import TYPE_CHECKING, Protocol

from django.db import models

if TYPE_CHECKING:
    from providers.clients.base import RunSnapshot


class TimeSource(models.TextChoices):
    PROVIDER = "provider", "Reported by the provider"
    OBSERVED = "observed", "Observed by comfytrack"


PROVIDER, OBSERVED = TimeSource.PROVIDER.value, TimeSource.OBSERVED.value
# In timeline order.
TIME_NAMES = ("queued", "started", "finished")
TIME_FIELDS = ("created", *TIME_NAMES)
_SOURCE = {name: f"{name}_source" for name in TIME_NAMES}
_READ = attrgetter(*TIME_NAMES, *_SOURCE.values())


class Timeline(Protocol):
    """What these rules read of a run (runs.models.Run): each time in TIME_FIELDS and its `<name>_source`."""

    @property
    def created_source(self) -> str: ...


def provider_times(snapshot: RunSnapshot) -> dict[str, datetime | None]:
    """The times a snapshot reports, by run column (a provider's creation time is when it queued the run)."""
    return {"queued": snapshot.queued or snapshot.created, "started": snapshot.started, "finished": snapshot.finished}


def merged_times(
    run: Timeline, snapshot: RunSnapshot, now: datetime, *, running: bool, finished: bool, tracked: bool
) -> dict[str, object]:
    """The time columns (and their sources) a snapshot changes on `run`, as {column: value}.

    `running`/`finished` describe the status the run is moving to: a running run without a start time
    gets `now` as an observed one, a `finished` one gets `now` as its observed finish (a lost run is not
    finished here: comfytrack never saw it end). `tracked`: registered by id, so `created` is the
    provider's earliest time.
    """
    reported = provider_times(snapshot)
    # The run's times and sources read once, by one C-level getter (this runs for every run of a batch).
    read = _READ(run)
    current, stored = dict(zip(TIME_NAMES, read[:3], strict=True)), dict(zip(TIME_NAMES, read[3:], strict=True))
    values: dict[str, datetime | None] = {}
    sources: dict[str, str] = {}
    for name in TIME_NAMES:
        time, source = current[name], stored[name] or (OBSERVED if current[name] else "")
        if source == PROVIDER and time is not None:
            values[name], sources[name] = time, PROVIDER
        elif reported[name] is not None:
            values[name], sources[name] = reported[name], PROVIDER
        else:
            values[name], sources[name] = time, source if time else ""
    if running and values["started"] is None:
        values["started"], sources["started"] = now, OBSERVED
    if finished and values["finished"] is None:
        values["finished"], sources["finished"] = now, OBSERVED
    _order(values, sources)

    changes: dict[str, object] = {}
    for name in TIME_NAMES:
        if values[name] != current[name]:
            changes[name] = values[name]
        if sources[name] != stored[name]:
            changes[_SOURCE[name]] = sources[name]
    if tracked and run.created_source != PROVIDER:
        earliest = min((t for t in (snapshot.created, *reported.values()) if t is not None), default=None)
        if earliest is not None:
            changes["created"], changes["created_source"] = earliest, PROVIDER
    return changes


def _order(values: dict[str, datetime | None], sources: dict[str, str]) -> None:
    """Make queued ≤ started ≤ finished (skipping empty times), moving observed times first."""
    for _ in TIME_NAMES:  # each pass can only push a change one step along
        present = [name for name in TIME_NAMES if values[name] is not None]
        moved = False
        for earlier, later in pairwise(present):
            if values[later] >= values[earlier]:  # type: ignore[operator]  # both are in `present`: not None
                continue
            moved = True
            if sources[later] == OBSERVED or sources[earlier] != OBSERVED:
                # An observed later time, or two provider times out of order (kept consistent either way).
                values[later] = values[earlier]
            else:
                values[earlier] = values[later]
        if not moved:
            return


def time_source(value: datetime | None, source: str) -> str | None:
    """A time's source as the API writes it: null for a null time; a time from before sources were
    recorded counts as observed (it may have been)."""
    if value is None:
        return None
    return source or OBSERVED
