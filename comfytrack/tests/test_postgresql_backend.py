"""comfytrack.postgresql: the health check that skips `SELECT 1` while the connection's socket is quiet."""

from __future__ import annotations

import os
import resource
import socket

import pytest
from django.db import DatabaseError, connection, connections

from comfytrack.postgresql.base import _readable

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the PostgreSQL backend only")


@pytest.fixture
def second():
    """A connection of its own (not the test's transaction), closed afterwards."""
    wrapper = connections.create_connection("default")
    wrapper.ensure_connection()
    yield wrapper
    wrapper.close()


def test_settings_select_the_backend():
    assert type(connections["default"]).__module__ == "comfytrack.postgresql.base"


@pytest.mark.django_db(transaction=True)
def test_a_quiet_connection_is_usable_without_a_round_trip(second, monkeypatch):
    def no_queries(*args, **kwargs):
        raise AssertionError("the health check sent a statement")

    monkeypatch.setattr(second.connection, "cursor", no_queries)
    assert second.is_usable()


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_server_closed_is_not_usable(second):
    with second.connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])  # waits until it has gone
    assert not second.is_usable()
    second.close_if_health_check_failed()  # what Django does at the start of a request
    assert second.connection is None or second.connection.closed


@pytest.mark.django_db(transaction=True)
def test_a_connection_in_an_aborted_transaction_is_not_usable(second):
    second.set_autocommit(False)
    with pytest.raises(DatabaseError), second.cursor() as cursor:
        cursor.execute("SELECT 1 / 0")
    assert not second.is_usable()  # the socket is quiet, but the transaction can run nothing more
    second.rollback()
    second.set_autocommit(True)
    assert second.is_usable()


def test_the_socket_check_works_past_descriptor_1024():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    ours, theirs = socket.socketpair()
    high = os.dup2(ours.fileno(), 1500)
    try:
        assert not _readable(high)
        theirs.sendall(b"x")
        assert _readable(high)
    finally:
        os.close(high)
        ours.close()
        theirs.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
