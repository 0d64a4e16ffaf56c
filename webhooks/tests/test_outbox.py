"""The run-change hook and the outbox: a status change and its webhook messages commit together or not at all."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.db import DatabaseError, OperationalError, connection, connections, transaction

from providers.clients.base import OutputKind, OutputRef, RunSnapshot, RunStatus
from runs.applying import apply_snapshot
from runs.changes import RunChange, on_run_changes, remove_subscriber
from runs.models import EventSource, Run, RunEvent, Status
from webhooks.models import WebhookDelivery

PNG = OutputRef(key="n9/a.png", filename="a.png", kind=OutputKind.IMAGE, url="https://cdn.example.com/a.png")


def snapshot(run, status: RunStatus, outputs=()) -> RunSnapshot:
    return RunSnapshot(external_id=run.external_id, status=status, provider_status=status.value, outputs=outputs)


@pytest.fixture
def subscriber():
    """A test subscriber, removed afterwards."""
    added = []

    def add(function):
        added.append(on_run_changes(function))
        return function

    yield add
    for function in added:
        remove_subscriber(function)


def test_subscribers_get_the_batch_inside_the_transaction(provider, make_run, subscriber):
    seen: list[RunChange] = []

    @subscriber
    def record(changes):
        assert connection.in_atomic_block
        seen.extend(changes)

    on_run_changes(record)  # registering twice calls it once
    run = make_run(provider, status=Status.QUEUED)
    apply_snapshot(run, snapshot(run, RunStatus.SUCCEEDED, outputs=(PNG,)), EventSource.POLL)
    apply_snapshot(run, snapshot(run, RunStatus.SUCCEEDED, outputs=(PNG,)), EventSource.POLL)  # nothing new: no change
    assert len(seen) == 1
    change = seen[0]
    assert change.run.pk == run.pk and change.run.status == Status.SUCCEEDED
    assert change.old_status == Status.QUEUED and change.status_changed
    assert change.new_output_keys == ("n9/a.png",)


def test_a_failing_subscriber_rolls_the_change_back(org, provider, make_run, make_endpoint, subscriber):
    make_endpoint(org, "https://hooks.example.com/all")

    @subscriber
    def broken(changes):
        raise DatabaseError("the alerts table is gone")

    run = make_run(provider, status=Status.QUEUED)
    with pytest.raises(DatabaseError):
        apply_snapshot(run, snapshot(run, RunStatus.SUCCEEDED), EventSource.POLL)
    run.refresh_from_db()
    assert run.status == Status.QUEUED
    assert not RunEvent.objects.filter(run=run).exists() and not WebhookDelivery.objects.exists()


def test_the_engine_does_not_import_its_subscribers():
    runs_dir = Path(__file__).resolve().parents[2] / "runs"
    importers = []
    for path in runs_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if any(name == "webhooks" or name.startswith("webhooks.") for name in names):
                importers.append(path.name)
    assert importers == []


@pytest.mark.skipif(connection.vendor != "postgresql", reason="terminates a PostgreSQL backend")
@pytest.mark.django_db(transaction=True)
def test_a_connection_lost_between_the_change_and_its_messages_loses_both(org, provider, make_run, make_endpoint):
    """The backend is terminated after the run's UPDATE, just before the deliveries' INSERT."""
    make_endpoint(org, "https://hooks.example.com/all")
    run = make_run(provider, status=Status.QUEUED)
    killer = connections.create_connection("default")

    def terminate_before_deliveries(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("INSERT") and WebhookDelivery._meta.db_table in sql:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid = cursor.fetchone()[0]
            with killer.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
        return execute(sql, params, many, context)

    try:
        with (
            connection.execute_wrapper(terminate_before_deliveries),
            pytest.raises(OperationalError),
            transaction.atomic(),
        ):
            apply_snapshot(run, snapshot(run, RunStatus.SUCCEEDED), EventSource.POLL)
    finally:
        killer.close()
        connection.close()
    run = Run.objects.get(pk=run.pk)  # a new connection
    assert run.status == Status.QUEUED
    assert not RunEvent.objects.filter(run=run).exists() and not WebhookDelivery.objects.exists()
    # The next attempt writes the change and its message together.
    apply_snapshot(run, snapshot(run, RunStatus.SUCCEEDED), EventSource.POLL)
    assert Run.objects.get(pk=run.pk).status == Status.SUCCEEDED
    assert list(WebhookDelivery.objects.values_list("event_type", flat=True)) == ["run.succeeded"]
