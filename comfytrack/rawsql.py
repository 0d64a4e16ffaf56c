"""Fixed-shape reads on the API's hot path, without the ORM's per-query compile (~1 ms each here).

The SQL is built once per shape from model metadata (quoted table and column names; values are always
parameters), and rows are converted exactly as `.values()` would convert them (the backend's and the
field's converters: UUIDs and datetimes on SQLite, JSON, …), so callers see the same dicts.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.db.models import Model


@functools.cache
def _columns(model: type[Model], names: tuple[str, ...]) -> tuple[str, list]:
    meta = model._meta
    quote = connection.ops.quote_name
    fields = [meta.get_field(name) for name in names]
    select = ", ".join(quote(field.column) for field in fields)
    converters = []
    for field in fields:
        column = field.get_col(meta.db_table)
        converters.append((column, connection.ops.get_db_converters(column) + column.get_db_converters(connection)))
    return select, converters


def column(model: type[Model], name: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(name).column)


def select_sql(model: type[Model], names: Sequence[str], where: str, order_by: Sequence[str] = ()) -> str:
    """SELECT `names` FROM the model's table WHERE `where` (SQL with %s placeholders; `column()` for names).
    Also for `Model.objects.raw(...)`, where instances are wanted instead of dicts."""
    select, _ = _columns(model, tuple(names))
    order = ", ".join(column(model, name) for name in order_by)
    return (
        f"SELECT {select} FROM {connection.ops.quote_name(model._meta.db_table)} WHERE {where}"  # noqa: S608
        + (f" ORDER BY {order}" if order else "")
    )


def select_rows(
    model: type[Model], names: Sequence[str], where: str, params: Sequence[Any], order_by: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """`names` of the `model` rows matching `where`, as `.values()`-like dicts."""
    _, converters = _columns(model, tuple(names))
    with connection.cursor() as cursor:
        cursor.execute(select_sql(model, names, where, order_by), list(params))
        rows = cursor.fetchall()
    out = []
    for row in rows:
        values = {}
        for name, value, (expression, functions) in zip(names, row, converters, strict=True):
            for function in functions:
                value = function(value, expression, connection)
            values[name] = value
        out.append(values)
    return out
