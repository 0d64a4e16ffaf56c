"""Filling in derived run columns for runs saved before the column existed (a migration and a command)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import Q, QuerySet

from runs.fingerprint import workflow_fingerprint
from runs.workflow import caption

BATCH = 1000


def fingerprint_runs(run_model, *, only_missing: bool = True) -> int:
    """Compute `workflow_fingerprint` for runs with a workflow, 1,000 at a time; returns how many changed.

    `run_model` is the Run class (a migration passes its historical one)."""
    runs = run_model.objects.exclude(workflow={})
    if only_missing:
        runs = runs.filter(workflow_fingerprint="")
    return fill_from_graph(runs, "workflow_fingerprint", workflow_fingerprint)


def caption_runs(run_model) -> int:
    """Work out `caption` for runs with a workflow or inputs, 1,000 at a time; returns how many changed.

    `run_model` is the Run class (a migration passes its historical one)."""
    return fill_from_graph(run_model.objects.exclude(Q(workflow={}) & Q(inputs={})), "caption", caption)


def fill_from_graph(runs: QuerySet, column: str, derive: Callable[[Any, Any], Any]) -> int:
    """Set `column` to `derive(workflow, inputs)` on each of `runs`, 1,000 at a time in key order (so a
    run the update takes out of `runs` is not skipped); returns how many changed."""
    changed, last = 0, 0
    while True:
        batch = list(runs.filter(pk__gt=last).order_by("pk").only("pk", "workflow", "inputs", column)[:BATCH])
        if not batch:
            return changed
        last = batch[-1].pk
        dirty = []
        for run in batch:
            value = derive(run.workflow, run.inputs)
            if value != getattr(run, column):
                setattr(run, column, value)
                dirty.append(run)
        runs.model.objects.bulk_update(dirty, [column])
        changed += len(dirty)
