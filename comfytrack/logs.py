"""Request ids for logs: every log line written while serving a request names that request.

The id is the caller's `X-Request-ID` when it is a plain token (a TLS proxy or load balancer that
sets one lets its logs and ours be joined), else a new random one; the response carries it back.
Lines logged outside a request (the q cluster's loops, management commands) show "-".
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is echoed into our logs and headers: only a short token of safe characters is taken.
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_current: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def current_request_id() -> str:
    return _current.get()


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = offered if _ACCEPTABLE.fullmatch(offered) else uuid.uuid4().hex
        request.request_id = request_id
        token = _current.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            _current.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record (the formatters name it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _current.get()
        return True


# The inbound ComfyDeploy webhook authenticates by a token in its path (/api/v1/hooks/comfydeploy/<provider>/<token>):
# anything that logs request paths (the access log, django.request warnings) must not write it.
_WEBHOOK_TOKEN = re.compile(r"(/hooks/comfydeploy/[^/?#\s]+/)[^/?#\s\"']+")


def redact_paths(text: str) -> str:
    return _WEBHOOK_TOKEN.sub(r"\1[redacted]", text)
