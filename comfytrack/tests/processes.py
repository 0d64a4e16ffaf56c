"""Start the production processes (q cluster, sweepers, gunicorn) as real child processes in tests.

The children use the production settings module against the test database (which the test made
with real commits: `django_db(transaction=True)`), with the suite's secrets, so they decrypt the
credentials the test stored. Every child runs in a process group of its own and `stop` ends the
whole group: nothing is left running behind a failed test; `delete_redis_keys` clears what a cluster left
on the Redis broker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def test_database_url() -> str:
    """A DATABASE_URL for the database this test is using (PostgreSQL)."""
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{quote(db.get('USER') or '', safe='')}{password}@{host}{port}/{db['NAME']}"


def child_env(**overrides: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "COMFYTRACK_REDIS_URL", "PROMETHEUS_MULTIPROC_DIR"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="comfytrack.settings",
        DATABASE_URL=test_database_url(),
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        SECRET_KEY=settings.SECRET_KEY,
        COMFYTRACK_ENCRYPTION_KEYS=",".join(settings.ENCRYPTION_KEYS),
        COMFYTRACK_STATIC_MANIFEST="false",
        SECURE_SSL_REDIRECT="false",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        handle.close()


def stop(process: subprocess.Popen, signum: int = signal.SIGTERM, grace: float = 10.0) -> None:
    """Ask the process group to stop, then kill whatever is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(env: dict[str, str], log: Path, port: int) -> subprocess.Popen:
    """gunicorn with the production configuration, once it answers /healthz."""
    from comfytrack.tests import web_client

    env = {**env, "COMFYTRACK_BIND": f"127.0.0.1:{port}"}
    process = start(["-m", "gunicorn", "-c", "python:comfytrack.gunicorn_config", "comfytrack.wsgi"], env, log)

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited: {log.read_text(errors='replace')[-3000:]}")
        try:
            return web_client.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except web_client.Unreachable:
            return False

    wait_for(up, timeout=30, what="gunicorn to answer /healthz")
    return process


# -- a q cluster's keys on the Redis broker: `<name>` and `django_q:<name>:*`, its name unique per test


def redis_keys(url: str, name: str) -> list:
    import redis

    client = redis.from_url(url)
    try:
        return [*client.keys(f"django_q:{name}:*"), *client.keys(name)]
    finally:
        client.close()


def delete_redis_keys(url: str, name: str) -> None:
    import redis

    client = redis.from_url(url)
    try:
        if keys := redis_keys(url, name):
            client.delete(*keys)
    finally:
        client.close()


class WebhookReceiver:
    """An HTTP endpoint on loopback that records every webhook it gets (id header, event type)."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received: list[tuple[str, str]] = []
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    received.append((self.headers.get("webhook-id", ""), json.loads(body).get("type", "")))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.received = received
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self.url = f"http://{self.host}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
