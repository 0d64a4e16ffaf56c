"""How the API writes JSON: one renderer for every answer, GET or POST, error or not."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest
from ninja.renderers import BaseRenderer
from pydantic import BaseModel

_DJANGO_ENCODER = DjangoJSONEncoder()


def datetime_text(value: Any) -> str:
    """A datetime (or UUID, Decimal, …) as API text: exactly as ninja's encoder (a DjangoJSONEncoder)
    writes it everywhere else in the API, milliseconds and "Z", rather than orjson's own microseconds."""
    if type(value) is datetime:
        # The encoder's own steps for an aware datetime, without its chain of isinstance checks: a list
        # page writes 200 of them.
        text = value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    return _DJANGO_ENCODER.default(value)


def json_bytes(data: Any) -> bytes:
    """The API's JSON: compact, datetimes as `datetime_text`. Every answer is written by this."""
    return orjson.dumps(data, default=datetime_text, option=orjson.OPT_PASSTHROUGH_DATETIME)


class OrjsonRenderer(BaseRenderer):
    """The API's renderer: every answer ninja writes, including the run list and detail."""

    media_type = "application/json"

    def render(self, request: HttpRequest, data: Any, *, response_status: int) -> bytes:
        return json_bytes(data)


class DictSchema(BaseModel):
    """A response schema for answers an endpoint builds as dicts (a page of runs, a run's events). ninja
    validates and renders it like its own `Schema`; as a plain pydantic model it skips `Schema`'s wrapper
    for reading model attributes, which would be most of a 50-run list request's CPU
    (bench/api_throughput.py)."""
