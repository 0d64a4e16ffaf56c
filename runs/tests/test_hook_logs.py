"""The inbound ComfyDeploy webhook's token (a secret in its path) never reaches a log line, and chunked
bodies (no Content-Length) are read.

In-process: failing hook calls (400, 404, 413, 503) through the test client, read from the console
handler settings.LOGGING installs, with the plain and the JSON formatter. Under gunicorn (the production
server; PostgreSQL only, as its processes must see the test's rows): a real chunked request, and its
log file, access lines and Django's lines alike.
"""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.db import connection
from pythonjsonlogger.json import JsonFormatter

import runs.inbound_events
from comfytrack.logs import RedactPathsFilter
from comfytrack.tests import web_client
from comfytrack.tests.processes import child_env, free_port, start_gunicorn, stop
from providers.tests.shared import fixture
from runs.models import Run, Status

RUN_ID = "b5c9a0c4-3f1e-4a8e-9d0b-6d2f6a1e7c42"
RUNNING = fixture("comfydeploy/webhook_run_updated_running.json")


@pytest.fixture
def hooked(provider, make_run):
    token = provider.issue_webhook_token()
    make_run(provider, RUN_ID, status=Status.QUEUED, next_sync_after=None)
    return f"/api/v1/hooks/comfydeploy/{provider.code}/{token}", token


@pytest.fixture(params=["plain", "json"])
def console(request):
    """What the configured console handler writes, with its own formatter or the JSON one."""
    (handler,) = [h for h in logging.getLogger().handlers if any(isinstance(f, RedactPathsFilter) for f in h.filters)]
    assert isinstance(handler, logging.StreamHandler)
    stream, formatter = io.StringIO(), handler.formatter
    previous = handler.setStream(stream)
    if request.param == "json":
        handler.setFormatter(JsonFormatter("%(levelname)s %(name)s %(message)s"))
    try:
        yield stream
    finally:
        handler.setStream(previous)
        handler.setFormatter(formatter)


@pytest.mark.django_db
def test_failing_hook_calls_log_no_token(client, hooked, console, monkeypatch):
    url, token = hooked
    bad_token = url.rsplit("/", 1)[0] + "/" + "B" * 43

    def explode(*args, **kwargs):
        raise RuntimeError(f"database on fire while handling {url}")  # a traceback naming the path

    answers = [
        client.post(url, "{not json", content_type="application/json").status_code,
        client.post(url, "x" * (1024 * 1024 + 1), content_type="application/json").status_code,
        client.post(bad_token, json.dumps(RUNNING), content_type="application/json").status_code,
    ]
    monkeypatch.setattr(runs.inbound_events, "apply_snapshot", explode)
    answers.append(client.post(url, json.dumps(RUNNING), content_type="application/json").status_code)
    assert answers == [400, 413, 404, 503]
    logged = console.getvalue()
    assert "Bad Request" in logged and "database on fire" in logged and "Traceback" in logged
    assert token not in logged and "B" * 43 not in logged
    assert logged.count("/[redacted]") >= 5


postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="gunicorn's processes need a shared database (PostgreSQL in CI)"
)


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_gunicorn_reads_a_chunked_hook_body_and_logs_no_token(hooked, tmp_path):
    url, token = hooked
    env = child_env(ALLOWED_HOSTS="127.0.0.1", COMFYTRACK_ACCESS_LOG="-", WEB_CONCURRENCY="1")
    port, log = free_port(), tmp_path / "gunicorn.log"
    process = start_gunicorn(env, log, port)
    try:
        base, https = f"http://127.0.0.1:{port}", {"X-Forwarded-Proto": "https"}
        body = json.dumps(RUNNING).encode()
        # A generator body: sent chunked, without Content-Length.
        chunked = web_client.post(f"{base}{url}", content=iter([body[:40], body[40:]]), headers=https)
        assert chunked.sent_headers.get("Transfer-Encoding") == "chunked"
        assert "Content-Length" not in chunked.sent_headers
        assert chunked.status_code == 200, chunked.text
        assert chunked.json()["run"] is not None
        bad = web_client.post(f"{base}{url}", content=iter([b"{not json"]), headers=https)
        big = web_client.post(f"{base}{url}", content=iter([b"x" * 600_000, b"x" * 600_000]), headers=https)
        assert (bad.status_code, big.status_code) == (400, 413)
    finally:
        stop(process)
    assert Run.objects.get(external_id=RUN_ID).status == Status.RUNNING
    logged = log.read_text(errors="replace")
    assert "Bad Request" in logged and "/[redacted]" in logged
    assert token not in logged
