"""gunicorn with the production configuration (comfytrack/gunicorn_config.py) and WhiteNoise, for real.

PostgreSQL only: the server's processes must see the test's committed rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest
from django.db import connection

from comfytrack.tests import web_client
from comfytrack.tests.processes import ROOT, child_env, free_port, start, start_gunicorn, stop, wait_for

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the server's processes need a shared database (PostgreSQL in CI)"
)
# The server's processes read the test database: it must exist before the module's server starts.
pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "web-server-metrics-token-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory, django_db_setup):
    """One server for the module (collectstatic and the start take seconds); the test database exists."""
    tmp_path = tmp_path_factory.mktemp("web")
    static_root = tmp_path / "static"
    env = child_env(
        STATIC_ROOT=str(static_root),
        COMFYTRACK_STATIC_MANIFEST="true",
        SECURE_SSL_REDIRECT="true",
        ALLOWED_HOSTS="127.0.0.1",
        WEB_CONCURRENCY="2",
        COMFYTRACK_WEB_THREADS="2",
        COMFYTRACK_ACCESS_LOG=str(tmp_path / "access.log"),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        COMFYTRACK_METRICS_TOKEN=TOKEN,
    )
    (tmp_path / "metrics").mkdir()
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert collected.returncode == 0, collected.stderr.decode()
    port = free_port()
    process = start_gunicorn(env, tmp_path / "gunicorn.log", port)
    yield f"http://127.0.0.1:{port}", static_root, tmp_path
    stop(process)


@postgres_only
def test_static_files_are_compressed_and_cached_for_a_year(server):
    base, static_root, _ = server
    manifest = json.loads((static_root / "staticfiles.json").read_text())["paths"]
    css = next(hashed for name, hashed in manifest.items() if name.endswith(".css"))
    response = web_client.get(f"{base}/static/{css}", headers={"Accept-Encoding": "gzip", "X-Forwarded-Proto": "https"})
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert "max-age=315360000" in response.headers["Cache-Control"]
    assert "immutable" in response.headers["Cache-Control"]


@postgres_only
def test_https_is_believed_only_from_the_trusted_proxy(server):
    base, _, _ = server
    # From 127.0.0.1 (FORWARDED_ALLOW_IPS' default): X-Forwarded-Proto counts, no redirect to HTTPS.
    assert web_client.get(f"{base}/login/", headers={"X-Forwarded-Proto": "https"}).status_code == 200
    plain = web_client.get(f"{base}/login/")
    assert plain.status_code == 301 and plain.headers["Location"].startswith("https://")


@postgres_only
def test_the_access_log_names_the_request_but_never_a_webhook_token(server):
    base, _, tmp_path = server
    token = "whk-" + uuid.uuid4().hex
    response = web_client.post(
        f"{base}/api/v1/hooks/comfydeploy/{uuid.uuid4()}/{token}", json={}, headers={"X-Forwarded-Proto": "https"}
    )
    assert response.status_code in (401, 403, 404)
    request_id = response.headers["X-Request-ID"]
    # gunicorn writes the access line after it has sent the answer: on a busy machine, a moment later.
    deadline = time.monotonic() + 10
    while True:
        stop_log = (tmp_path / "access.log").read_text()
        lines = [line for line in stop_log.splitlines() if "/hooks/comfydeploy/" in line]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert lines, stop_log[-2000:]
    line = lines[0]
    assert token not in stop_log
    assert "/[redacted]" in line and request_id in line


@postgres_only
def test_metrics_add_up_every_gunicorn_worker(server):
    base, _, _ = server
    https = {"X-Forwarded-Proto": "https"}
    # Keep-alive off: new connections spread over both workers.
    for _ in range(12):
        assert web_client.get(f"{base}/api/v1/runs", headers={**https, "Connection": "close"}).status_code == 401
    text = web_client.get(f"{base}/metrics", headers={**https, "Authorization": f"Bearer {TOKEN}"}).text
    line = next(line for line in text.splitlines() if line.startswith('comfytrack_api_requests_total{status="401"}'))
    assert float(line.rsplit(" ", 1)[1]) == 12
    assert "comfytrack_runs_in_flight" in text


@postgres_only
def test_serve_production_runs_gunicorn_and_the_cluster_and_stops_both_on_sigterm(tmp_path):
    import signal
    import time

    port = free_port()
    env = child_env(
        COMFYTRACK_BIND=f"127.0.0.1:{port}",
        COMFYTRACK_WEB_GRACEFUL_TIMEOUT="5",
        COMFYTRACK_Q_NAME=f"ct-serve-{uuid.uuid4().hex[:8]}",
        WEB_CONCURRENCY="1",
    )
    log = tmp_path / "serve.log"
    serve = start(["scripts/serve.py", "--production"], env, log)
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), timeout=60, what="serve.py's gunicorn")
        wait_for(lambda: "Q Cluster" in log.read_text(errors="replace"), timeout=60, what="serve.py's q cluster")
        started = time.monotonic()
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0
        assert time.monotonic() - started < 30
    finally:
        stop(serve)
    text = log.read_text(errors="replace")
    assert "comfytrack stopped." in text and "Traceback" not in text
    assert not _answers(f"http://127.0.0.1:{port}/healthz")
    assert "has stopped" in text  # the q cluster's own last line


def _answers(url: str) -> bool:
    try:
        return web_client.get(url, timeout=2).status_code == 200
    except web_client.Unreachable:
        return False
