"""The database settings: Django's own PostgreSQL backend, persistent connections with its health check,
and server-side binding with prepared statements, each a setting an operator can change."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.db import close_old_connections, connection, connections

from comfytrack.settings import BASE_DIR

ON_POSTGRESQL = connection.vendor == "postgresql"


def database_settings(**env: str) -> dict:
    """DATABASES["default"] as comfytrack.settings builds it from `env` (in a fresh process)."""
    script = "import json, django; from django.conf import settings; django.setup(); "
    script += "print(json.dumps(settings.DATABASES['default'], default=str))"
    environment = {k: v for k, v in os.environ.items() if k not in ("CONN_MAX_AGE", "DATABASE_PREPARED_STATEMENTS")}
    environment.update(DJANGO_SETTINGS_MODULE="comfytrack.settings", DEBUG="true", **env)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=BASE_DIR, env=environment, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.splitlines()[-1])


def test_postgresql_uses_django_backend_with_health_checks_and_prepared_statements():
    found = database_settings(DATABASE_URL="postgres://app@db.example:5432/comfytrack")
    assert found["ENGINE"] == "django.db.backends.postgresql"
    assert found["CONN_MAX_AGE"] == 60 and found["CONN_HEALTH_CHECKS"] is True
    assert found["OPTIONS"] == {"server_side_binding": True, "prepare_threshold": 5}


def test_each_is_a_setting():
    found = database_settings(
        DATABASE_URL="postgres://app@db.example:5432/comfytrack",
        CONN_MAX_AGE="0",
        CONN_HEALTH_CHECKS="false",
        DATABASE_PREPARED_STATEMENTS="false",
    )
    assert found["ENGINE"] == "django.db.backends.postgresql"
    assert found["CONN_MAX_AGE"] == 0 and found["CONN_HEALTH_CHECKS"] is False
    assert "server_side_binding" not in found.get("OPTIONS", {})


def served(client, path: str):
    """`client.get(path)` with what a server does around each request (the test client leaves it out):
    Django's check of its kept connections at the request's start and end."""
    close_old_connections()
    try:
        return client.get(path)
    finally:
        close_old_connections()


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.mark.skipif(not ON_POSTGRESQL, reason="PostgreSQL's connections")
@pytest.mark.django_db(transaction=True)
def test_a_kept_connection_the_server_closed_fails_no_request(client, monkeypatch):
    # As in production: the connection outlives the request, and is health-checked when reused.
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)
    monkeypatch.setitem(connection.settings_dict, "CONN_HEALTH_CHECKS", True)
    connection.close()
    try:
        assert served(client, "/readyz").status_code == 200
        pid = backend_pid()
        assert connection.connection.prepare_threshold == 5  # prepared statements are on
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])  # waits until it has gone
        finally:
            other.close()
        assert served(client, "/readyz").status_code == 200
        assert backend_pid() != pid
    finally:
        connection.close()
