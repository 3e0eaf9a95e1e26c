"""The two statements every new key runs, written once per database instead of per request.

The ORM builds and compiles its SQL on each call, which for the reservation INSERT and the
completion UPDATE cost about as much Python time as the round trips themselves (measured in
``bench/``). Where the database has ``INSERT ... ON CONFLICT DO NOTHING RETURNING``
(PostgreSQL, SQLite 3.35+), a replay's collision is no error either: no exception in Python,
no savepoint inside a caller's transaction, no ERROR line in PostgreSQL's log. Elsewhere the
store falls back to the ORM and its IntegrityError.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field

from idempotency.models import IdempotencyRecord

INSERT_FIELDS = (
    "scope",
    "key",
    "fingerprint",
    "method",
    "path",
    "state",
    "response_headers",
    "response_body",
    "lease_token",
    "locked_until",
    "created_at",
    "expires_at",
)
COMPLETE_FIELDS = (
    "state",
    "response_status",
    "response_headers",
    "response_body",
    "completed_at",
    "locked_until",
    "expires_at",
)


@dataclass(frozen=True)
class RecordStatements:
    # None where the database cannot skip a conflicting INSERT and return the new row's id.
    insert: str | None
    complete: str

    def insert_params(self, connection: BaseDatabaseWrapper, values: dict[str, Any]) -> list[Any]:
        return _prepared(connection, INSERT_FIELDS, values)

    def complete_params(
        self, connection: BaseDatabaseWrapper, values: dict[str, Any], record_id: int, token: Any
    ) -> list[Any]:
        return [
            *_prepared(connection, COMPLETE_FIELDS, values),
            record_id,
            _field("lease_token").get_db_prep_value(token, connection),
            IdempotencyRecord.State.IN_PROGRESS.value,
        ]


def _prepared(
    connection: BaseDatabaseWrapper, names: tuple[str, ...], values: dict[str, Any]
) -> list[Any]:
    return [_field(name).get_db_prep_save(values[name], connection) for name in names]


@cache  # looked up for every parameter of every new key: the model's fields never change
def _field(name: str) -> Field[Any, Any]:
    field = IdempotencyRecord._meta.get_field(name)
    assert isinstance(field, Field)
    return field


@cache
def record_statements(alias: str) -> RecordStatements:
    connection = connections[alias]
    quote = connection.ops.quote_name
    table = quote(IdempotencyRecord._meta.db_table)

    def column(name: str) -> str:
        db_column = _field(name).column
        assert db_column is not None
        return quote(db_column)

    insert = None
    features = connection.features
    if features.supports_update_conflicts_with_target and features.can_return_columns_from_insert:
        columns = ", ".join(column(name) for name in INSERT_FIELDS)
        placeholders = ", ".join(["%s"] * len(INSERT_FIELDS))
        insert = (
            f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) "
            f"ON CONFLICT ({column('scope')}, {column('key')}) DO NOTHING "
            f"RETURNING {column('id')}"
        )
    assignments = ", ".join(f"{column(name)} = %s" for name in COMPLETE_FIELDS)
    complete = (
        f"UPDATE {table} SET {assignments} "
        f"WHERE {column('id')} = %s AND {column('lease_token')} = %s AND {column('state')} = %s"
    )
    return RecordStatements(insert, complete)
