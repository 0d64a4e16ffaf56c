"""gunicorn's configuration (`gunicorn -c python:comfytrack.gunicorn_config comfytrack.wsgi`; scripts/serve.py).

Every knob comes from the environment; docs/deploy.md lists them. Threads (gthread) rather than more
processes: a request mostly waits on PostgreSQL or streams a file, and each process holds its own
database connection per thread, so processes x threads is what PostgreSQL must allow.
"""

from __future__ import annotations

import os
import re
from typing import Any

from gunicorn.glogging import Logger

from comfytrack.logs import redact_paths

bind = [item.strip() for item in os.environ.get("COMFYTRACK_BIND", "127.0.0.1:8000").split(",") if item.strip()]
workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
threads = int(os.environ.get("COMFYTRACK_WEB_THREADS") or 4)
worker_class = "gthread"
# A request slower than this is killed (file downloads stream in chunks, each well under it).
timeout = int(os.environ.get("COMFYTRACK_WEB_TIMEOUT") or 60)
# On SIGTERM (a deploy), requests in progress get this long to finish.
graceful_timeout = int(os.environ.get("COMFYTRACK_WEB_GRACEFUL_TIMEOUT") or 30)
keepalive = 5
# Recycle a worker now and then, so a slow leak in any library cannot grow without bound.
max_requests = int(os.environ.get("COMFYTRACK_WEB_MAX_REQUESTS") or 2000)
max_requests_jitter = max_requests // 10
# The TLS proxy in front: its X-Forwarded-* headers are believed only from these addresses.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
accesslog = os.environ.get("COMFYTRACK_ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# Client, request id (joins with our own log lines), request line, status, bytes, milliseconds, agent.
access_log_format = '%(h)s %({x-request-id}o)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
# The temporary heartbeat files in memory, not on a possibly slow disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 — gunicorn's documented choice


class RedactingLogger(Logger):
    """The access log without secrets: webhook tokens in paths, and no credential headers at all."""

    _credential_headers = re.compile(r"\{(authorization|x-api-key|cookie|proxy-authorization)\}i")

    def atoms(self, resp, req, environ, request_time):
        atoms: dict[str, Any] = dict(super().atoms(resp, req, environ, request_time))
        for key, value in atoms.items():
            if self._credential_headers.fullmatch(key):
                atoms[key] = "-"
            elif isinstance(value, str):
                atoms[key] = redact_paths(value)
        return atoms


logger_class = RedactingLogger


def child_exit(server, worker):
    # Prometheus multiprocess mode: a dead worker's live gauges must not be summed forever.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
