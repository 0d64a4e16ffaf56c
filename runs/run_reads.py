"""The API's two hottest reads, an organization's run by id and its newest runs page by page, as SQL
through the public cursor.

Compiling the `run_row_queryset` query (25 columns, two joins) costs as much CPU as the rest of the
request's read, on every request (bench/api_throughput.py). So the same SELECT is written once per
process from model metadata (quoted table and column names; every value is a parameter, adapted by the
field's own `get_db_prep_value`), and its rows are the dicts `run_row_queryset` gives. psycopg already
loads uuid, timestamptz and numeric columns as UUID, aware datetime and Decimal, so PostgreSQL's rows are
taken as they come; SQLite's text is turned into each field's type. The statements themselves, apart from
the page's LIMIT, are built once per process too: rebuilding them from metadata on every request cost as
much as decoding the page's rows. runs/tests/test_run_reads.py checks both against the ORM on both databases.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Context, Decimal
from typing import Any

from django.db import connection
from django.utils.dateparse import parse_datetime

from comfytrack.sql import column, concrete_field
from providers.models import Provider
from runs.models import Run

# The `run_row_queryset` names that are not the run's own fields, as (joined table alias, model, field).
_JOINED = {
    "provider__code": ("p", Provider, "code"),
    "provider__name": ("p", Provider, "name"),
    "provider__kind": ("p", Provider, "kind"),
    "retry_of__code": ("retry", Run, "code"),
}


def _uuid(value: Any) -> Any:
    return value if value is None or isinstance(value, uuid.UUID) else uuid.UUID(value)


def _datetime(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = parse_datetime(value)
    # SQLite stores UTC without an offset (and Django's sqlite3 adapter may already have parsed it).
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


_DECIMALS = Context(prec=15)


def _decimal(value: Any) -> Any:
    if value is None or isinstance(value, Decimal):
        return value
    return _DECIMALS.create_decimal_from_float(value) if isinstance(value, float) else Decimal(value)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "UUIDField": _uuid,
    "DateTimeField": _datetime,
    "DecimalField": _decimal,
}


@functools.cache
def _select(names: tuple[str, ...], outputs_sql: str | None) -> tuple[str, tuple[str, ...], tuple]:
    """The SELECT … FROM … JOIN … of `names` (+ `outputs_json`), its result names and the (position,
    converter) of each column whose value the driver may hand over as text (none on PostgreSQL)."""
    quote = connection.ops.quote_name
    run_table = quote(Run._meta.db_table)
    expressions: list[str] = []
    converters: list[Callable[[Any], Any] | None] = []
    for name in names:
        if name == "pk":
            expressions.append(f"{run_table}.{column(Run, 'id')}")
            converters.append(None)
        elif name == "error_text":
            expressions.append(f"CAST({run_table}.{column(Run, 'error')} AS text)")
            converters.append(None)
        elif name in _JOINED:
            alias, model, field_name = _JOINED[name]
            expressions.append(f"{alias}.{column(model, field_name)}")
            converters.append(_CONVERTERS.get(model._meta.get_field(field_name).get_internal_type()))
        else:
            expressions.append(f"{run_table}.{column(Run, name)}")
            converters.append(_CONVERTERS.get(Run._meta.get_field(name).get_internal_type()))
    result_names = names
    if outputs_sql is not None:
        expressions.append(f"({outputs_sql})")
        converters.append(None)
        result_names = (*names, "outputs_json")
    sql = (
        f"SELECT {', '.join(expressions)} FROM {run_table} "  # noqa: S608 - model metadata only
        f"INNER JOIN {quote(Provider._meta.db_table)} AS p ON p.{column(Provider, 'id')} = "
        f"{run_table}.{column(Run, 'provider')} "
        f"LEFT OUTER JOIN {run_table} AS retry ON retry.{column(Run, 'id')} = {run_table}.{column(Run, 'retry_of')}"
    )
    typed = connection.vendor == "postgresql"
    positioned = () if typed else tuple((i, convert) for i, convert in enumerate(converters) if convert is not None)
    return sql, result_names, positioned


def _rows(select: tuple[str, tuple[str, ...], tuple], where: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    sql, names, converters = select
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} WHERE {where}", list(params))
        rows = cursor.fetchall()
    if not converters:
        return [dict(zip(names, row, strict=True)) for row in rows]
    out = []
    for row in rows:
        values = list(row)
        for index, convert in converters:
            values[index] = convert(values[index])
        out.append(dict(zip(names, values, strict=True)))
    return out


def _prep(name: str, value: Any) -> Any:
    return concrete_field(Run, name).get_db_prep_value(value, connection)


@functools.cache
def _detail_where() -> str:
    table = connection.ops.quote_name(Run._meta.db_table)
    return f"{table}.{column(Run, 'organization')} = %s AND {table}.{column(Run, 'code')} = %s"


@functools.cache
def _page_where(after_position: bool) -> str:
    """The newest-first page's WHERE … ORDER BY (its LIMIT is added per request), after a position or not."""
    table = connection.ops.quote_name(Run._meta.db_table)
    created, code = f"{table}.{column(Run, 'created')}", f"{table}.{column(Run, 'code')}"
    where = f"{table}.{column(Run, 'organization')} = %s"
    if after_position:
        # The plain `created <= …` bound lets the (organization, created, code) index do a range scan.
        where += f" AND {created} <= %s AND ({created} < %s OR ({created} = %s AND {code} < %s))"
    return f"{where} ORDER BY {created} DESC, {code} DESC"


def run_rows(
    select_names: tuple[str, ...], outputs_sql: str | None, organization_id: int, code: uuid.UUID
) -> list[dict[str, Any]]:
    """The organization's run `code` (none or one row)."""
    return _rows(_select(select_names, outputs_sql), _detail_where(), [organization_id, _prep("code", code)])


def newest_rows(
    select_names: tuple[str, ...],
    outputs_sql: str | None,
    organization_id: int,
    position: tuple[()] | tuple[datetime, uuid.UUID],
    limit: int,
) -> list[dict[str, Any]]:
    """Up to `limit` of the organization's runs, newest first, after the (created, code) `position` if one
    is given: the rows `runs.queries.newest_first` selects."""
    params: list[Any] = [organization_id]
    if position:
        at, after = _prep("created", position[0]), _prep("code", position[1])
        params += [at, at, at, after]
    # LIMIT as a literal, as the ORM writes it: with `LIMIT $n` PostgreSQL's generic plan for a prepared
    # statement assumes a tenth of the table and never wins, so every run would be planned anew.
    where = f"{_page_where(bool(position))} LIMIT {int(limit)}"
    return _rows(_select(select_names, outputs_sql), where, params)
