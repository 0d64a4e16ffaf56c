"""Fixed-shape reads on the API's hot path, without the ORM's per-query compile (~1 ms each here).

The SQL is built once per shape from model metadata (quoted table and column names; values are always
parameters), and rows are converted exactly as `.values()` would convert them (the backend's and the
field's converters: UUIDs and datetimes on SQLite, JSON, …), so callers see the same dicts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connection
from django.db.models import Model, QuerySet

from comfytrack.sql import column, column_of, concrete_field


@functools.cache
def _columns(model: type[Model], names: tuple[str, ...]) -> tuple[str, list]:
    meta = model._meta
    fields = [concrete_field(model, name) for name in names]
    select = ", ".join(column_of(field) for field in fields)
    converters = []
    for field in fields:
        column = field.get_col(meta.db_table)
        converters.append((column, connection.ops.get_db_converters(column) + column.get_db_converters(connection)))
    return select, converters


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


class CompiledValuesQuery:
    """A `.values()` queryset compiled to SQL once per process and then run with new values each time.

    Compiling a joined, ordered queryset costs about as much CPU as PostgreSQL spends running it, on every
    request. `build(*sentinels)` makes the queryset from stand-in values; its SQL is kept if every
    parameter is one of those stand-ins passed through unchanged, so later runs only swap in real values.
    That holds on PostgreSQL. Where the backend rewrites a value (SQLite turns datetimes and UUIDs into
    text; integers pass) the SQL is not `reusable` and `rows` builds and runs the queryset each time, so
    callers need no second path. Rows come back exactly as `.values()` gives them: the compiler's own
    converters, passed the calling thread's connection (they are bound to the compiling thread's
    `connection.ops`, which holds no per-connection state they use).
    """

    def __init__(
        self,
        build: Callable[..., QuerySet],
        sql: str | None = None,
        slots: Sequence[int] = (),
        names: Sequence[str] = (),
        converters: Sequence[tuple[int, list, Any]] = (),
    ):
        self.build, self.sql, self.slots, self.names, self.converters = build, sql, slots, names, converters

    @property
    def reusable(self) -> bool:
        return self.sql is not None

    @classmethod
    def compile(cls, build: Callable[..., QuerySet], sentinels: Sequence[Any]) -> CompiledValuesQuery:
        queryset = build(*sentinels)
        query = queryset.query
        if query.low_mark or query.high_mark is not None:
            raise ValueError("slice with the `limit` argument of rows(), not in build()")
        compiler = query.get_compiler(queryset.db)
        sql, params = compiler.as_sql()
        try:
            slots = [next(i for i, s in enumerate(sentinels) if type(s) is type(p) and s == p) for p in params]
        except StopIteration:
            return cls(build)  # the backend adapted a value: its SQL cannot be reused with raw values
        # As `ValuesIterable` names the columns.
        names = (
            list(query.selected)
            if query.selected
            else [*query.extra_select, *query.values_select, *query.annotation_select]
        )
        converters = [
            (index, functions, expression)
            for index, (functions, expression) in compiler.get_converters([s[0] for s in compiler.select]).items()
        ]
        return cls(build, sql, slots, names, converters)

    def rows(self, values: Sequence[Any], limit: int | None = None) -> list[dict[str, Any]]:
        if self.sql is None:
            queryset = self.build(*values)
            return list(queryset if limit is None else queryset[:limit])
        params = [values[slot] for slot in self.slots]
        sql = self.sql
        if limit is not None:
            # A literal, as the ORM writes it: with `LIMIT $n` PostgreSQL's generic plan for a prepared
            # statement assumes a tenth of the table and never wins, so every run was planned anew.
            sql = f"{sql} LIMIT {int(limit)}"
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        names = self.names
        out = []
        for row in rows:
            if self.converters:
                row = list(row)
                for index, functions, expression in self.converters:
                    value = row[index]
                    for function in functions:
                        value = function(value, expression, connection)
                    row[index] = value
            out.append(dict(zip(names, row, strict=True)))
        return out
