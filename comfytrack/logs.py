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


# Attributes every LogRecord has; anything else on a record came in through `extra=` (a JSON formatter
# writes those too, e.g. django.request's `request`, whose text is the request line).
_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _redacted(value):
    if isinstance(value, str):
        return redact_paths(value)
    if value is None or isinstance(value, int | float):
        return value
    text = str(value)
    cleaned = redact_paths(text)
    return cleaned if cleaned != text else value


class RedactPathsFilter(logging.Filter):
    """`redact_paths` over everything a record will print: its message and arguments, its extra
    attributes and its traceback. On the console handler, so it covers every logger (django.request too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _redacted(record.msg)
        if isinstance(record.args, dict):
            record.args = {key: _redacted(value) for key, value in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(_redacted(value) for value in record.args)
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD_ATTRIBUTES:
                setattr(record, name, _redacted(value))
        if record.exc_info:
            # Formatted here, so no formatter sees the raw traceback; formatters print exc_text instead.
            record.exc_text = redact_paths(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact_paths(record.exc_text)
        return True
