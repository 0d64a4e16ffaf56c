"""Reading JSON that users and API clients send: refuse what parses but cannot be stored or walked.

Python's `json` accepts values our databases and our own code cannot take: nesting deep enough to hit
the recursion limit (a RecursionError, not a ValueError), `NaN`/`Infinity` and numbers like `1e400`
that become infinite floats (SQLite's JSON check and PostgreSQL's jsonb refuse them), NUL
characters (PostgreSQL stores none in text or jsonb) and lone surrogates (`"\\ud800"` parses to a
string that cannot be encoded as UTF-8, so the first query or answer that carries it fails). Each
becomes an `UnsafeJSON` whose message completes a sentence: "The workflow " + str(exc).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# ComfyUI API-format workflows nest about five levels (node → inputs → [node, slot]); custom nodes
# with structured inputs a few more. Far below Python's recursion limit, so no walk over them can hit it.
MAX_DEPTH = 64
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class UnsafeJSON(ValueError):
    """Valid JSON that cannot be stored or processed; the message reads "is nested …", "contains …".
    `path` is where in the document (keys and list indexes), empty when unknown."""

    def __init__(self, message: str, path: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


class NotAnObject(UnsafeJSON):
    """JSON that is not an object where one is expected (every request body the API takes is one)."""


def loads_object(raw: str | bytes) -> dict[str, Any]:
    """`loads`, and refuse anything but an object: a list, a string, a number, true/false or null."""
    value = loads(raw)
    if not isinstance(value, dict):
        kind = (
            "null"
            if value is None
            else {list: "a list", str: "a string", bool: "true or false"}.get(type(value), "a number")
        )
        raise NotAnObject(f"must be a JSON object, not {kind}")
    return value


def loads(raw: str | bytes) -> Any:
    """Parse and `check`; raises json.JSONDecodeError for invalid JSON, UnsafeJSON for the rest."""
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise UnsafeJSON(f"is nested more than {MAX_DEPTH} levels deep") from None
    check(value)
    return value


def check(value: Any) -> Any:
    """Raise UnsafeJSON if `value` (already parsed) nests too deeply, holds a non-finite number, a NUL or a
    lone surrogate."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict | list):
            if len(path) >= MAX_DEPTH:
                raise UnsafeJSON(f"is nested more than {MAX_DEPTH} levels deep", path[:1])
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                _check_text(key, path)
                stack.append((child, (*path, str(key))))
        elif isinstance(item, float) and not math.isfinite(item):
            raise UnsafeJSON("contains a number too large to store (or NaN/Infinity)", path)
        elif isinstance(item, str):
            _check_text(item, path)
    return value


def _check_text(text: Any, path: tuple[str, ...]) -> None:
    if not isinstance(text, str):
        return
    if "\x00" in text:
        raise UnsafeJSON("contains a NUL character (\\u0000), which cannot be stored", path)
    if _SURROGATE.search(text):
        raise UnsafeJSON("contains a lone surrogate (\\ud800-\\udfff), which is not text that can be stored", path)


def _refuse_constant(name: str) -> Any:
    raise UnsafeJSON(f"contains {name}, which is not a number JSON can store")
