"""Applying provider snapshots to runs: one run (`apply_snapshot`, `mark_status`) or a whole sweep batch
(`apply_many`). The rules themselves belong to the models (runs.models: `allowed_transition`,
`Run.snapshot_fields`); this module is the one code path that writes them.

Both go through `apply_many`, so there is one implementation of the rules:
1. UNKNOWN is ignored (the sync engine decides about `lost`); so is any backwards move.
2. Each run's changes are written with a conditional UPDATE on the status that was read: a run
   another worker changed first is re-read and left alone. On PostgreSQL a batch is written with one
   `UPDATE … FROM unnest(…) … RETURNING` per shape of change (runs.bulk), not one statement per run.
3. A RunEvent per status change and the new outputs are inserted in bulk, in the same transaction.
   The output counter grows in the run's own UPDATE by the outputs found new, and is corrected by the
   rows a concurrent writer inserted first, so it always equals the rows stored.
4. The batch's changes go to the run-change hook's subscribers (runs.changes), still in that
   transaction: outbound webhook messages commit or roll back with the change (an outbox). Runs about
   to finish are shown to the finishing subscribers before the UPDATE, so the columns they add (a
   run's cost) are written by it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from providers.clients.base import OutputRef, RunError, RunSnapshot, RunStatus
from runs import changes as run_changes
from runs.bulk import add_to, insert_rows, update_where
from runs.models import TERMINAL, Run, RunEvent, RunOutput, Status, allowed_transition


def apply_snapshot(
    run: Run, snapshot: RunSnapshot, source: str, *, now: datetime | None = None, extra: dict | None = None
) -> bool:
    """Apply what the provider says about one run; True if its status changed.

    A terminal status never changes; a stale earlier status is ignored; a lost race re-reads the run.
    """
    return apply_many([(run, snapshot, extra)], source, now)[0]


def mark_status(run: Run, status: Status, source: str, reason: str, *, now: datetime | None = None) -> bool:
    """A status decided here rather than by the provider (timed_out, lost, cancelled by us, failed submit)."""
    snapshot = RunSnapshot(
        external_id=run.external_id,
        status=RunStatus(status.value),
        provider_status=run.provider_status,
        error=RunError(message=reason) if status != Status.SUCCEEDED else None,
        live_status=reason,
    )
    return apply_snapshot(run, snapshot, source, now=now)


def record_outputs(run: Run, outputs: Sequence[OutputRef]) -> int:
    """Upsert one run's outputs by their provider key; refresh URLs (they expire and get re-signed)."""
    return record_outputs_many([(run, outputs)])


@dataclass
class RunUpdate:
    run: Run
    snapshot: RunSnapshot
    old_status: str
    new_status: str
    status_changes: bool
    changes: dict[str, Any]

    @property
    def records_outputs(self) -> bool:
        return bool(self.snapshot.outputs) and (self.status_changes or self.old_status == self.new_status)


def plan_update(run: Run, snapshot: RunSnapshot, now: datetime, extra: dict | None) -> RunUpdate | None:

    if snapshot.status == RunStatus.UNKNOWN:
        return None
    new_status = Status(snapshot.status.value)
    changes = run.snapshot_fields(snapshot, new_status, now)
    old_status = run.status
    status_changes = new_status != old_status and allowed_transition(old_status, new_status)
    if not status_changes:
        # Details (progress, live status, outputs) of an unchanged in-flight status still count.
        if run.is_finished or new_status != old_status:
            changes = {}
        changes.pop("status", None)
    changes.update(extra or {})
    return RunUpdate(run, snapshot, old_status, new_status, status_changes, changes)


def apply_many(
    items: Sequence[tuple[Run, RunSnapshot, dict | None]], source: str, now: datetime | None = None
) -> list[bool]:
    """Apply each (run, snapshot, extra fields); returns, per item, whether its status changed.

    `extra` fields (the sync engine's bookkeeping) ride along in the run's UPDATE; when the race is
    lost they are not written, and the run object then shows the other worker's state.
    """

    now = now or timezone.now()
    # `run.id`, not `run.pk`, in the per-run loops here: the property's method call costs 5% of a sweep.
    plans = [plan_update(run, snapshot, now, extra) for run, snapshot, extra in items]
    results = [False] * len(plans)
    with transaction.atomic():
        # New outputs are known before the run's UPDATE, so the output counter grows in that same
        # statement: a second UPDATE of the row cost PostgreSQL as much as the first (bench/sync_write_floor.py).
        outputs = output_changes([(p.run, p.snapshot.outputs) for p in plans if p is not None and p.records_outputs])
        for p in plans:
            if p is not None and outputs.new.get(p.run.id):
                p.changes["n_outputs"] = len(outputs.new[p.run.id])
        # Columns other apps write with a finishing run (its cost) ride along in the same UPDATE.
        run_changes.announce_finishing(
            [p for p in plans if p is not None and p.status_changes and p.new_status in TERMINAL]
        )
        won = conditional_update([p for p in plans if p is not None and p.changes])
        applied: list[RunUpdate] = []
        for index, p in enumerate(plans):
            if p is None:
                continue
            if p.changes and p.run.id not in won:
                p.run.refresh_from_db()
                continue
            for name, value in p.changes.items():
                if name != "n_outputs":  # an increment, settled below
                    setattr(p.run, name, value)
            applied.append(p)
            results[index] = p.status_changes
        insert_rows(RunEvent, [event(p, source, now) for p in applied if p.status_changes])
        new_keys: dict[int, list[str]] = defaultdict(list)
        counted = {p.run.id: len(outputs.new.get(p.run.id, ())) for p in applied}
        added = outputs.write({p.run.id for p in applied}, new_keys)
        # Rows a concurrent writer inserted first were skipped by the unique constraint: take them back.
        add_to(Run, "n_outputs", {pk: added.get(pk, 0) - n for pk, n in counted.items() if added.get(pk, 0) != n})
        for p in applied:
            p.run.n_outputs += added.get(p.run.id, 0)
        # The run-change hook (webhooks, alerts): subscribers write their rows in this same transaction.
        run_changes.announce(
            [
                run_changes.RunChange(p.run, p.old_status, p.status_changes, tuple(new_keys.get(p.run.id, ())))
                for p in applied
                if p.status_changes or new_keys.get(p.run.id)
            ]
        )
    return results


def event(p: RunUpdate, source: str, now: datetime) -> dict[str, Any]:
    snapshot = p.snapshot
    return {
        "run_id": p.run.id,
        "created": now,
        "source": source,
        "from_status": p.old_status,
        "to_status": p.new_status,
        "provider_status": snapshot.provider_status[:100],
        "detail": (snapshot.error.message if snapshot.error else snapshot.live_status or "")[:1000],
    }


def conditional_update(plans: list[RunUpdate]) -> set[int]:
    """Write each plan's changes where the run still has the status it was read with; returns the pks written.

    One statement per shape of change (the set of columns written), each over the whole batch.
    """

    shapes: dict[tuple[str, ...], list[RunUpdate]] = defaultdict(list)
    for p in plans:
        shapes[tuple(sorted(p.changes))].append(p)
    won: set[int] = set()
    for names, group in shapes.items():
        rows = [(p.run.id, p.old_status, [p.changes[name] for name in names]) for p in group]
        won |= update_where(Run, names, rows, guard="status", increments=("n_outputs",))
    return won


@dataclass
class OutputChanges:
    """What a batch of snapshots changes in the runs' outputs: new rows per run pk, re-signed URLs."""

    new: dict[int, list[dict[str, Any]]]
    refreshed: dict[int, list[tuple[RunOutput, OutputRef]]]

    def write(self, run_pks: set[int], new_keys: dict[int, list[str]] | None = None) -> Counter:
        """Write the changes of `run_pks`; returns the rows inserted per run pk (and their keys in `new_keys`)."""

        for pk in run_pks:
            for current, ref in self.refreshed.get(pk, ()):
                current.refresh_url(ref)
        rows = [row for pk in run_pks for row in self.new.get(pk, ())]
        # Only the rows actually inserted count: a concurrent writer's duplicate is skipped by the constraint.
        inserted = insert_rows(RunOutput, rows, skip_conflicts=True, returning=("run", "key"))
        if new_keys is not None:
            for run_id, key in inserted:
                new_keys[run_id].append(key)
        return Counter(run_id for run_id, _ in inserted)


def output_changes(pairs: list[tuple[Run, Sequence[OutputRef]]]) -> OutputChanges:
    """Compare each run's reported outputs with its stored ones (upsert by provider key). Runs known to
    have no outputs yet skip the read."""

    existing: dict[int, dict[str, RunOutput]] = defaultdict(dict)
    with_outputs = [run.id for run, _ in pairs if run.n_outputs]
    if with_outputs:
        for output in RunOutput.objects.filter(run_id__in=with_outputs):
            existing[output.run_id][output.key] = output
    changes = OutputChanges(defaultdict(list), defaultdict(list))
    # The defaults of `created` and `next_archive_after` (due now), read once for the batch, not per row.
    stamp = timezone.now()
    common = {"created": stamp, "next_archive_after": stamp}
    for run, refs in pairs:
        for ref in {ref.key[:500]: ref for ref in refs}.values():
            current = existing[run.id].get(ref.key[:500])
            if current is None:
                row = {"run_id": run.id, "organization_id": run.organization_id, **common}
                changes.new[run.id].append({**row, **RunOutput.fields_from_ref(ref)})
            elif ref.url[:2000] != current.provider_url:
                changes.refreshed[run.id].append((current, ref))
    return changes


def record_outputs_many(pairs: list[tuple[Run, Sequence[OutputRef]]]) -> int:
    """Upsert outputs by provider key for several runs outside a status change; refresh re-signed URLs.
    Returns how many are new."""

    if not pairs:
        return 0
    added = output_changes(pairs).write({run.id for run, _ in pairs})
    add_to(Run, "n_outputs", added)
    for run, _ in pairs:
        run.n_outputs += added.get(run.id, 0)
    return sum(added.values())
