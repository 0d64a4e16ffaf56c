"""Probes for process managers and load balancers, answered before the host check and HTTPS redirect.

- `/healthz`: the process is up and serving (no dependency is touched: a database outage must not
  get every web process restarted).
- `/readyz`: the database, the task broker and the file storage answer; otherwise 503 naming the part
  that failed and the kind of error, never its message (which may hold a host name, a DSN or a key).
- `/metrics`: Prometheus text, for a bearer token or an allowed network (comfytrack.metrics_endpoint).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable

from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import connection
from django.http import HttpResponse, JsonResponse

from comfytrack.metrics_endpoint import metrics_view

logger = logging.getLogger("comfytrack.health")


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_broker() -> None:
    # The ORM broker is the database (checked above); Redis must answer PING.
    if "redis" not in settings.Q_CLUSTER:
        return
    import redis

    # Short timeouts: a probe that hangs is a probe that failed.
    client = redis.from_url(settings.Q_CLUSTER["redis"], socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def check_storage() -> None:
    if isinstance(default_storage, FileSystemStorage):
        location = default_storage.location
        # A missing directory is created on the first archived file, if its parent allows it.
        target = location if os.path.exists(location) else os.path.dirname(location)
        if not os.path.isdir(target):
            raise NotADirectoryError("the media location is not a directory")
        if not os.access(target, os.W_OK | os.X_OK):
            raise PermissionError("the media directory is not writable")
        return
    # A bucket: a HEAD of a key that is never written reaches it and proves the credentials
    # (a 404 is an answer; a 403, a DNS failure or a timeout raise).
    default_storage.exists(f"readyz-probe-{uuid.uuid4().hex}")


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "broker": check_broker,
    "storage": check_storage,
}


def readiness() -> tuple[bool, dict[str, str]]:
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:
            logger.warning("readiness: %s check failed", name, exc_info=True)
            results[name] = f"failed ({type(exc).__name__})"
        else:
            results[name] = "ok"
    return all(value == "ok" for value in results.values()), results


def healthz(request) -> HttpResponse:
    return JsonResponse({"status": "ok"})


def readyz(request) -> HttpResponse:
    ready, checks = readiness()
    return JsonResponse({"status": "ready" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


class ProbeMiddleware:
    """Answers the probe paths itself, so they work whatever Host the prober sends and over plain HTTP."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        view = _PROBES.get(request.path_info)
        if view is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            response = HttpResponse(status=405)
            response["Allow"] = "GET, HEAD"
            return response
        response = view(request)
        response["Cache-Control"] = "no-store"
        return response


_PROBES: dict[str, Callable] = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics_view}
