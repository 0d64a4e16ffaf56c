"""Filling in derived run columns for runs saved before the column existed (a migration and a command)."""

from __future__ import annotations

from django.db.models import Q

from runs.fingerprint import workflow_fingerprint
from runs.workflow import caption

BATCH = 1000


def fingerprint_runs(run_model, *, only_missing: bool = True) -> int:
    """Compute `workflow_fingerprint` for runs with a workflow, 1,000 at a time; returns how many changed.

    `run_model` is the Run class (a migration passes its historical one)."""
    runs = run_model.objects.exclude(workflow={})
    if only_missing:
        runs = runs.filter(workflow_fingerprint="")
    changed, last = 0, 0
    while True:
        batch = list(
            runs.filter(pk__gt=last).order_by("pk").only("pk", "workflow", "inputs", "workflow_fingerprint")[:BATCH]
        )
        if not batch:
            return changed
        last = batch[-1].pk
        dirty = []
        for run in batch:
            value = workflow_fingerprint(run.workflow, run.inputs)
            if value != run.workflow_fingerprint:
                run.workflow_fingerprint = value
                dirty.append(run)
        run_model.objects.bulk_update(dirty, ["workflow_fingerprint"])
        changed += len(dirty)


def caption_runs(run_model) -> int:
    """Work out `caption` for runs with a workflow or inputs, 1,000 at a time; returns how many changed.

    `run_model` is the Run class (a migration passes its historical one)."""
    runs = run_model.objects.exclude(Q(workflow={}) & Q(inputs={}))
    changed, last = 0, 0
    while True:
        batch = list(runs.filter(pk__gt=last).order_by("pk").only("pk", "workflow", "inputs", "caption")[:BATCH])
        if not batch:
            return changed
        last = batch[-1].pk
        dirty = []
        for run in batch:
            value = caption(run.workflow, run.inputs)
            if value != run.caption:
                run.caption = value
                dirty.append(run)
        run_model.objects.bulk_update(dirty, ["caption"])
        changed += len(dirty)
