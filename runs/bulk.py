"""Bulk writes for the sweep's batches. On PostgreSQL: one statement over column arrays (`unnest`).

Django's bulk_create and a `VALUES (…), (…)` list both cost Python time per value (the compiler
prepares every field of every object; psycopg's client-side binding quotes every parameter into one
huge statement). One array per column (one scalar where a column's values are all alike, see
`_Source`), sent as binary parameters, keeps the statement short and
constant and leaves the per-value work to psycopg's C dumpers (about a fifth of the CPU of the other
ways for a 2,000-run batch; `bench/sync_write_floor.py` measures it). Only model metadata
(quoted names, column types) is formatted into the SQL; every value is a parameter. Other databases
(the embedded SQLite) take the ORM's way.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import psycopg
from django.db import IntegrityError, connection, models, transaction
from django.db.backends.utils import CursorWrapper

from comfytrack.sql import column_of, concrete_field

# Fields whose Python value psycopg cannot take as is (JSON documents, file names).
_PREPARED = ("JSONField", "FileField", "ImageField")


class _Source:
    """A bulk statement's values as a FROM item whose columns are named `_0`, `_1`, …, one per field.

    A column whose values differ is one binary array, zipped into rows by `unnest`; a column whose
    values are all the same (the batch's timestamp, an empty error, a default) is one scalar. psycopg
    dumps array items in Python, one by one, and of a batch of new outputs' 21 columns only 4 differ,
    so sending the others once saves most of that work. Column 0 is always an array, so the source has
    one row per value even when every column is uniform.
    """

    def __init__(self, fields: Sequence[models.Field], columns: Sequence[list[Any]]) -> None:
        self.names: list[str] = []  # how the statement refers to each column, in the order of `fields`
        scalars: list[tuple[str, models.Field]] = []
        arrays: list[tuple[str, models.Field]] = []
        self.params: list[Any] = []
        array_params: list[list[Any]] = []
        for index, (field, column) in enumerate(zip(fields, columns, strict=True)):
            name = f"_{index}"
            if index and _uniform(column):
                scalars.append((name, field))
                self.names.append(f"s.{name}")
                self.params.append(column[0])
            else:
                arrays.append((name, field))
                self.names.append(f"v.{name}")
                array_params.append(column)
        self.params += array_params
        # Scalars first: the parameters follow the SQL text's order.
        consts = ", ".join(f"%b::{field.db_type(connection)} AS {name}" for name, field in scalars)
        unnest = ", ".join(f"%b::{field.db_type(connection)}[]" for _, field in arrays)
        self.sql = (f"(SELECT {consts}) AS s, " if scalars else "") + (
            f"unnest({unnest}) AS v({', '.join(name for name, _ in arrays)})"
        )


def _uniform(column: list[Any]) -> bool:
    """Whether every value equals the first, of the same type (so 1 and True differ); C loops only."""
    return bool(column) and column.count(column[0]) == len(column) and len(set(map(type, column))) == 1


def _prepared(fields: Sequence[models.Field], columns: list[list[Any]]) -> list[list[Any]]:
    """The values of JSON and file fields prepared for the database (psycopg takes the others as they are)."""
    for index, field in enumerate(fields):
        if field.get_internal_type() in _PREPARED:
            columns[index] = [field.get_db_prep_save(value, connection) for value in columns[index]]
    return columns


def insert_rows(
    model: type[models.Model],
    rows: Iterable[Mapping[str, Any]],
    *,
    skip_conflicts: bool = False,
    returning: Sequence[str] = (),
) -> list[tuple]:
    """INSERT rows given as {field name, or `run_id` for a foreign key: value}; fields left out get their
    model default (callables included, e.g. uuid4 codes).

    With `skip_conflicts`, rows that break a unique constraint are dropped (ON CONFLICT DO NOTHING);
    with `returning`, those fields' values for the rows actually inserted come back, as tuples.
    """
    rows = list(rows)
    if not rows:
        return []
    if connection.vendor != "postgresql":
        return _insert_with_orm(model, rows, skip_conflicts=skip_conflicts, returning=returning)
    meta = model._meta
    fields = [f for f in meta.concrete_fields if isinstance(f, models.Field) and not isinstance(f, models.AutoField)]
    given = set().union(*rows)
    source = _Source(fields, _prepared(fields, [_column(rows, f, given) for f in fields]))
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(column_of(f) for f in fields)}) "  # noqa: S608
        f"SELECT {', '.join(source.names)} FROM {source.sql}"
        + (" ON CONFLICT DO NOTHING" if skip_conflicts else "")
        + (f" RETURNING {', '.join(column_of(concrete_field(model, name)) for name in returning)}" if returning else "")
    )
    with _cursor() as cursor:
        cursor.execute(sql, source.params)
        return [tuple(row) for row in cursor.fetchall()] if returning else []


def _insert_with_orm(
    model: type[models.Model], rows: list[Mapping[str, Any]], *, skip_conflicts: bool, returning: Sequence[str]
) -> list[tuple]:
    if not skip_conflicts:
        created = model._default_manager.bulk_create([model(**row) for row in rows])
    else:
        # Row by row, so the rows a unique constraint skipped are known (SQLite: in-process, one writer).
        created = []
        for row in rows:
            try:
                with transaction.atomic():
                    created.append(model._default_manager.create(**row))
            except IntegrityError:
                continue
    attnames = [concrete_field(model, name).attname for name in returning]
    return [tuple(getattr(obj, attname) for attname in attnames) for obj in created]


def _column(rows: Sequence[Mapping[str, Any]], field: models.Field, given: set[str]) -> list[Any]:
    """One field's values over the rows, which name a foreign key by its column attribute (`run_id`) and
    other fields by their name (`given`: the names any row has); a value left out is the field's default,
    called per row if callable (codes, timestamps, dicts), else worked out once."""
    name = field.attname
    if not callable(field.default):
        default = field.get_default()
        return [row.get(name, default) for row in rows] if name in given else [default] * len(rows)
    return [row[name] if name in row else field.get_default() for row in rows]


def update_where(
    model: type[models.Model],
    names: Sequence[str],
    rows: Sequence[tuple[Any, Any, Sequence[Any]]],
    *,
    guard: str,
    increments: Collection[str] = (),
) -> set[Any]:
    """UPDATE rows given as (pk, expected value of `guard`, values of `names`) where `guard` still has
    its expected value; returns the pks written. Columns named in `increments` grow by their value
    instead of taking it (another writer may move a counter meanwhile)."""
    if not rows:
        return set()
    if connection.vendor != "postgresql":
        # One statement per row is cheap in-process (SQLite), and it lacks typed arrays.
        manager = model._base_manager

        def assigned(name: str, value: Any) -> Any:
            return models.F(name) + value if name in increments else value

        return {
            pk
            for pk, expected, values in rows
            if manager.filter(pk=pk, **{guard: expected}).update(
                **{name: assigned(name, value) for name, value in zip(names, values, strict=True)}
            )
            == 1
        }
    meta = model._meta
    fields = [concrete_field(model, name) for name in names]
    guard_field = concrete_field(model, guard)
    pk_field = concrete_field(model, meta.pk.name)
    quote = connection.ops.quote_name
    keys = [pk_field, guard_field, *fields]
    columns = [list(column) for column in zip(*((pk, expected, *values) for pk, expected, values in rows), strict=True)]
    source = _Source(keys, _prepared(keys, columns))
    pk_value, guard_value, *values = source.names
    assignments = ", ".join(
        f"{column_of(f)} = " + (f"r.{column_of(f)} + {value}" if f.name in increments else value)
        for f, value in zip(fields, values, strict=True)
    )
    sql = (
        f"UPDATE {quote(meta.db_table)} AS r SET {assignments} "  # noqa: S608
        f"FROM {source.sql} "
        f"WHERE r.{column_of(pk_field)} = {pk_value} AND r.{column_of(guard_field)} = {guard_value} "
        f"RETURNING r.{column_of(pk_field)}"
    )
    with _cursor() as cursor:
        cursor.execute(sql, source.params)
        return {row[0] for row in cursor.fetchall()}


def add_to(model: type[models.Model], name: str, amounts: Mapping[Any, int]) -> None:
    """Add an amount to a counter column per pk, in one statement (another writer may move it meanwhile)."""
    if not amounts:
        return
    if connection.vendor != "postgresql":
        for pk, amount in amounts.items():
            model._base_manager.filter(pk=pk).update(**{name: models.F(name) + amount})
        return
    meta = model._meta
    field = concrete_field(model, name)
    pk_field = concrete_field(model, meta.pk.name)
    quote = connection.ops.quote_name
    column = column_of(field)
    source = _Source([pk_field, field], [list(amounts), list(amounts.values())])
    sql = (
        f"UPDATE {quote(meta.db_table)} AS r SET {column} = r.{column} + {source.names[1]} "  # noqa: S608
        f"FROM {source.sql} WHERE r.{column_of(pk_field)} = {source.names[0]}"
    )
    with _cursor() as cursor:
        cursor.execute(sql, source.params)


class _BinaryCursor(psycopg.Cursor):
    """Server-side binding with binary parameters: psycopg's C dumpers encode the column arrays (about
    a fifth of the CPU of the text/client-side route), and nothing is prepared, which keeps it safe
    behind transaction-pooling proxies."""

    def execute(self, query, params=None, *, prepare=False, binary=None):
        return super().execute(query, params, prepare=prepare, binary=binary)


def _cursor() -> CursorWrapper:
    # Wrapped like Django's own cursors, so execute_wrapper, query logging and counting see these too.
    connection.ensure_connection()
    raw = _BinaryCursor(connection.connection)
    wrap = connection.make_debug_cursor if connection.queries_logged else connection.make_cursor
    return wrap(raw)  # type: ignore[arg-type]  # the stubs type the argument as the wrapper it returns
