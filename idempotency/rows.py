"""Records read by the store's own SELECT (idempotency.statements): the ORM's conversions of
the row's values, without compiling a query per read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper

from idempotency.models import IdempotencyRecord
from idempotency.statements import READ_FIELDS


def record_from_row(
    connection: BaseDatabaseWrapper, using: str, scope: str, key: str, row: tuple[Any, ...]
) -> IdempotencyRecord:
    """The record of a row of ``RecordStatements.read``, its values converted as the ORM
    converts them (JSON text, SQLite's and MySQL's datetimes). Only the decisions' fields are
    read: nothing saves it."""
    values = []
    for (_name, column, converters), value in zip(_read_columns(connection), row, strict=True):
        if value is not None:
            for convert in converters:
                value = convert(value, column, connection)
        values.append(value)
    return record_from_values(using, scope, key, values)


def record_from_values(using: str, scope: str, key: str, values: list[Any]) -> IdempotencyRecord:
    """The record of the read's values, converted: the id, READ_FIELDS, the database's now."""
    named = {"scope": scope, "key": key, **dict(zip(_READ, values, strict=True))}
    db_now = named.pop(_DB_NOW)
    record = IdempotencyRecord.from_db(
        using, _FIELD_NAMES, [named.get(name) for name in _FIELD_NAMES]
    )
    if db_now is not None:
        record.db_now = db_now  # type: ignore[attr-defined]
    return record


_DB_NOW = "db_now"
_READ = ("id", *READ_FIELDS, _DB_NOW)
_FIELD_NAMES = [field.attname for field in IdempotencyRecord._meta.concrete_fields]
_Converter = Callable[..., Any]


def _read_columns(connection: BaseDatabaseWrapper) -> list[tuple[str, Any, list[_Converter]]]:
    """Each column of the read with the ORM's converters for it, looked up once per connection
    (about 60 us a row otherwise); the database's now converts as a datetime."""
    # Django picks MySQL's converters by USE_TZ when it looks them up: a cache built under
    # another USE_TZ (override_settings in tests) would hand back the other kind of datetime.
    cached = getattr(connection, "_idempotency_read_columns", None)
    if cached is not None and cached[0] == settings.USE_TZ:
        columns: list[tuple[str, Any, list[_Converter]]] = cached[1]
    else:
        columns = []
        for name in _READ:
            field = IdempotencyRecord._meta.get_field("created_at" if name == _DB_NOW else name)
            column = field.cached_col  # type: ignore[union-attr]
            converters = [
                *connection.ops.get_db_converters(column),
                *column.get_db_converters(connection),
            ]
            columns.append((name, column, converters))
        connection._idempotency_read_columns = (settings.USE_TZ, columns)  # type: ignore[attr-defined]
    return columns
