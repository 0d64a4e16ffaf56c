"""The API's error type and schema, importable by every router without importing the API itself."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ninja import Schema


class FieldErrorOut(Schema):
    field: str | None
    detail: str


class ErrorOut(Schema):
    detail: str
    code: str
    field: str | None = None
    errors: list[FieldErrorOut] | None = None


class ApiError(Exception):
    """Raised by handlers; the API turns it into `{"detail", "code", "field"}` with `status` (plus
    `errors`, one `{field, detail}` per problem, when there are several)."""

    def __init__(
        self,
        status: int,
        detail: str,
        code: str | None = None,
        *,
        field: str | None = None,
        errors: list[dict[str, str | None]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code
        self.field = field
        self.errors = errors


def not_found(what: str = "Not found.") -> ApiError:
    return ApiError(404, what, "not_found")


def invalid(detail: str, field: str | None = None) -> ApiError:
    return ApiError(422, detail, "invalid", field=field)


def describe_validation_errors(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    """ninja/pydantic errors as one sentence naming the field(s), and the first field's dotted name."""
    parts, first = [], None
    for error in errors[:5]:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "header", "payload")]
        name = ".".join(loc) or "body"
        first = first or name
        parts.append(f"{name}: {error.get('msg', 'invalid value')}")
    return "; ".join(parts) or "The request is not valid.", first


def errors(*codes: int) -> dict[int, type[ErrorOut]]:
    """The error responses an operation documents (401 and 429 apply to every authenticated one)."""
    return {code: ErrorOut for code in sorted({401, 422, 429, *codes})}
