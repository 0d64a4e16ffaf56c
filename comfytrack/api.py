"""The JSON API (docs/api.md), mounted at /api/v1/.

Every error, whatever raised it, answers with one shape: `{"detail": "<a sentence>", "code": "<slug>",
"field": "<the field at fault>" | null}` (docs/api.md "Errors"). Bad input is a 4xx, never a 500.
Every answer, GET or POST, error or not, is written by one renderer (comfytrack.api_json).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DataError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, AuthorizationError, HttpError, Throttled, ValidationError
from ninja.parser import Parser

from accounts.api_auth import API_AUTH, BadKeysThrottled, KeyRateThrottle
from comfytrack import untrusted_json
from comfytrack.api_errors import ApiError, describe_validation_errors
from comfytrack.api_json import OrjsonRenderer

logger = logging.getLogger("comfytrack.api")


class UntrustedJSONParser(Parser):
    """Bodies parse with comfytrack.untrusted_json: too deep, non-finite or NUL-carrying JSON is refused,
    and so is a body that is not an object (django-ninja wraps the error in a 400 "Cannot parse request
    body"; `_http_error` says which)."""

    def parse_body(self, request: HttpRequest):
        # django-ninja's Schema reads a list, a string or null as an object with no fields (its
        # defaults): only an object gets through.
        return untrusted_json.loads_object(request.body)


api = NinjaAPI(
    parser=UntrustedJSONParser(),
    title="comfytrack API",
    version="1",
    description=(
        "Submit, track and read ComfyUI runs on any configured hosting provider. Authenticate with an "
        "organization API key in `X-API-Key` or `Authorization: Bearer`. Errors are "
        '`{"detail": "…", "code": "…", "field": "…" | null}`.'
    ),
    auth=API_AUTH,
    renderer=OrjsonRenderer(),
    throttle=[KeyRateThrottle()],
    urls_namespace="api",
)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "too_large",
    422: "invalid",
    429: "throttled",
    502: "provider_error",
    503: "unavailable",
}


def error_response(
    request: HttpRequest, status: int, detail: str, code: str | None = None, *, field: str | None = None, **extra
) -> HttpResponse:
    """The one error body: `detail`, `code` and `field` (null when no one field is at fault) always."""
    body = {"detail": detail, "code": code or HTTP_CODES.get(status, "error"), "field": field, **extra}
    return api.create_response(request, body, status=status)


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    extra = {"errors": exc.errors} if exc.errors else {}
    return error_response(request, exc.status, exc.detail, exc.code, field=exc.field, **extra)


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    detail, field = describe_validation_errors(exc.errors)
    return error_response(request, 422, detail, "invalid", field=field)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error_response(
        request, 401, "Authentication required: send a valid, unrevoked API key in X-API-Key or Authorization: Bearer."
    )


@api.exception_handler(AuthorizationError)
def _forbidden(request: HttpRequest, exc: AuthorizationError) -> HttpResponse:
    return error_response(request, 403, exc.message if exc.message != "Forbidden" else "Not allowed.")


@api.exception_handler(Throttled)
def _throttled(request: HttpRequest, exc: Throttled) -> HttpResponse:
    if isinstance(exc, BadKeysThrottled):  # raised during authentication, where ninja adds no Retry-After
        response = error_response(request, 429, exc.message)
        response["Retry-After"] = str(exc.wait)
        return response
    return error_response(request, 429, "Too many requests for this API key; wait before trying again.")


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    message = str(exc.message)
    if exc.status_code == 400 and isinstance(exc.__cause__, untrusted_json.UnsafeJSON):
        where = exc.__cause__.path
        detail = f"{'.'.join(where)}: {exc.__cause__}." if where else f"The request body {exc.__cause__}."
        return error_response(request, 422, detail, "invalid", field=where[0] if where else "body")
    if exc.status_code == 400 and "parse request body" in message:
        return error_response(request, 422, "The request body is not valid JSON.", "invalid", field="body")
    return error_response(request, exc.status_code, message)


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return error_response(request, 413, f"The request body is over the {limit}-byte limit.", "too_large")


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(request, 404, "Not found.")


@api.exception_handler(DataError)
def _data_error(request: HttpRequest, exc: DataError) -> HttpResponse:
    # The database refused a value (NUL byte, out-of-range number): the client's input, not our fault.
    return error_response(request, 422, "A value in the request cannot be stored (e.g. it contains a NUL character).")


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("API %s %s failed", request.method, request.path)
    return error_response(request, 500, "Internal error; it has been logged.", "server_error")


api.add_router("/", "runs.api.router")
api.add_router("/providers", "providers.api.router")
api.add_router("/workflows", "insights.api.router")
api.add_router("/alerts", "alerts.api.router")
