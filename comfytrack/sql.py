"""Names for the raw SQL written through the public cursor: quoted from model metadata, never from values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import connection, models


def concrete_field(model: type[models.Model], name: str) -> models.Field:
    """The model's field that has a column of its own (a reverse relation has none to read or write)."""
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field) or field.column is None:
        raise TypeError(f"{model.__name__}.{name} has no column")
    return field


def column_of(field: models.Field) -> str:
    """The field's column name, quoted for the database."""
    if field.column is None:
        raise TypeError(f"{field.name} has no column")
    return connection.ops.quote_name(field.column)


def column(model: type[models.Model], name: str) -> str:
    """The quoted column name of the model's field `name`."""
    return column_of(concrete_field(model, name))


def python_value(field: models.Field, value: Any) -> Any:
    """A value SQLite returned for `field` (text for times and UUIDs, integers for booleans) as the field's
    Python type; times are UTC, as Django stores them there."""
    if value is None:
        return None
    value = field.to_python(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
