"""The statements every new key runs, written once per database instead of per request.

The ORM builds and compiles its SQL on each call, which for the reservation INSERT and the
completion UPDATE cost about as much Python time as the round trips themselves (measured in
``bench/``). Where the database has ``INSERT ... ON CONFLICT DO NOTHING RETURNING``
(PostgreSQL, SQLite 3.35+), a replay's collision is no error either: no exception in Python,
no savepoint inside a caller's transaction, no ERROR line in PostgreSQL's log. MySQL and
MariaDB get ``INSERT IGNORE`` and the new row's id from the connection (``lastrowid``); elsewhere
the store falls back to the ORM and its IntegrityError.

A key that exists is read back by a plain ``SELECT`` written here too, with the database's now
in the same statement: the ORM compiled that query on every replay, in-progress answer and poll.
On PostgreSQL both run inside one function call instead (idempotency.reserve_function); these
statements stand in for it where it is missing. One plain statement that reserves and reads back
(``WITH reserved AS (INSERT ...) SELECT ... UNION ALL SELECT ...``) was measured and dropped:
it cost more database CPU than the two statements on both paths (docs/databases.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache, lru_cache
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field

from idempotency.dbclock import DatabaseClock, database_clock
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
# The columns of an existing row the plain read returns after its id, in this order (then the
# database's now).
READ_FIELDS = (
    "state",
    "fingerprint",
    "method",
    "path",
    "response_status",
    "response_headers",
    "response_body",
    "locked_until",
    "expires_at",
)
COMPLETE_FIELDS = (
    "response_status",
    "response_headers",
    "response_body",
    "completed_at",
    "expires_at",
)
# Written as literals, not parameters: each parameter costs the driver an adaptation per call.
COMPLETED = IdempotencyRecord.State.COMPLETED.value
IN_PROGRESS = IdempotencyRecord.State.IN_PROGRESS.value


# On the database's clock (idempotency.dbclock), these columns are written as its ``now`` and
# these as ``now + interval`` (a :class:`FromNow` value); the store passes ``NOW`` for the first.
NOW_FIELDS = ("created_at", "completed_at")
LATER_FIELDS = ("locked_until", "expires_at")
NOW = object()
# A time the statement itself writes in full (the completion's, see complete_on_db_clock()).
IN_STATEMENT = object()


@dataclass(frozen=True)
class FromNow:
    """A time ``duration`` after the database's now, computed by the database."""

    duration: timedelta


@dataclass(frozen=True)
class RecordStatements:
    # None where the database cannot skip a conflicting INSERT (the ORM and IntegrityError).
    insert: str | None
    complete: str
    release: str
    # True: the INSERT returns the new id as a row (RETURNING); False: the cursor's lastrowid
    # after one affected row (MySQL's INSERT IGNORE).
    insert_returns_id: bool = True
    # The same two statements with the times computed by the database's clock (None: it has
    # none here, the store then uses the app server's).
    clock: DatabaseClock | None = None
    insert_on_db_clock: str | None = None
    # The completion on the database's clock with its expiry as an interval parameter: the text
    # complete_on_db_clock() writes each expiry into.
    complete_with_interval: str | None = None
    # A write that changes nothing: on SQLite it takes the database's write lock (RESERVED).
    take_write_lock: str = ""
    # PostgreSQL: the completion's values go to the driver as they are (the headers as JSON text
    # the statement casts), not through each model field's preparation, which cost a completion
    # more Python than the rest of its statement (tools/count_instructions.py).
    plain_completion: bool = False
    # The key's row (id, READ_FIELDS, the database's now or NULL), by scope and key: on the app's
    # clock (False) and on the database's (True).
    read: dict[bool, str] = field(default_factory=dict)
    # PostgreSQL with psycopg 3: the completion can end its transaction itself (committing()).
    completion_commits: bool = False

    def commits_in_completion(self, connection: BaseDatabaseWrapper) -> bool:
        """Whether this connection sends :func:`committing` as one round trip: its cursors bind
        parameters on the client (Django's default), so one execute runs several statements."""
        return self.completion_commits and _binds_on_client(connection.connection.cursor_factory)

    def insert_params(self, connection: BaseDatabaseWrapper, values: dict[str, Any]) -> list[Any]:
        return _prepared(connection, INSERT_FIELDS, values, self.clock)

    def complete_params(
        self, connection: BaseDatabaseWrapper, values: dict[str, Any], record_id: int, token: Any
    ) -> list[Any]:
        return [
            *_prepared(connection, COMPLETE_FIELDS, values, self.clock),
            record_id,
            _field("lease_token").get_db_prep_value(token, connection),
        ]

    @staticmethod
    def plain_complete_params(
        status: int | None, headers: list[Any], body: bytes, record_id: int, token: Any
    ) -> list[Any]:
        """The parameters of :meth:`complete_on_db_clock` where ``plain_completion``: what the
        fields' preparation passes on PostgreSQL (the int, the headers' JSON, the bytes and the
        UUID), each adapted by psycopg. The JSON keeps non-ASCII characters as they are: an
        escape such as ``\\u00e9`` is refused by ``jsonb`` in a SQL_ASCII database."""
        headers_json = json.dumps(headers, ensure_ascii=False)
        return [None if status is None else int(status), headers_json, body, record_id, token]

    def complete_on_db_clock(self, expiry: timedelta) -> str:
        """The completion on the database's clock, ``expiry`` written into it: the store passes
        ``IN_STATEMENT`` for both of its times, so no interval is adapted per call."""
        assert self.clock is not None and self.complete_with_interval is not None
        return _expiry_written(self.complete_with_interval, self.clock, expiry)

    def release_params(
        self, connection: BaseDatabaseWrapper, scope: str, key: str, token: Any
    ) -> list[Any]:
        return [scope, key, _field("lease_token").get_db_prep_value(token, connection)]


def _prepared(
    connection: BaseDatabaseWrapper,
    names: tuple[str, ...],
    values: dict[str, Any],
    clock: DatabaseClock | None,
) -> list[Any]:
    params = []
    for name in names:
        value = values[name]
        if value is NOW or value is IN_STATEMENT:
            continue  # written in the statement: no parameter
        if isinstance(value, FromNow):
            assert clock is not None
            params.append(clock.interval(value.duration))
        else:
            params.append(_field(name).get_db_prep_save(value, connection))
    return params


def _placeholders(names: tuple[str, ...], clock: DatabaseClock | None) -> list[str]:
    """``%s`` for each column, or on the database's clock its now and now + interval."""
    if clock is None:
        return ["%s"] * len(names)
    return [
        clock.now if name in NOW_FIELDS else clock.later if name in LATER_FIELDS else "%s"
        for name in names
    ]


# A handful of expiries per project, each written once.
@lru_cache(maxsize=256)
def _expiry_written(statement: str, clock: DatabaseClock, expiry: timedelta) -> str:
    # The expiry is the statement's one ``now + interval`` (checked in record_statements()).
    return statement.replace(clock.later, clock.later_by(expiry))


# Raised by the database as the committing completion's error when the fence matched no row.
LEASE_LOST = "idempotency: lease lost"


@lru_cache(maxsize=256)
def committing(completion: str) -> str:
    """``completion``, then ``COMMIT``, in one round trip: the operation's row locks are held
    for one round trip fewer. A fence that matches no row (the lease was lost) must not reach
    the ``COMMIT``, so it fails in the database: the CASE gives the marker text, which the
    cast to int refuses (SQLSTATE 22P02), and PostgreSQL skips the rest of the string. The
    cast is outside the CASE, whose constant branches the planner folds (an error there would
    be raised whatever the count)."""
    return (
        f"WITH completed AS ({completion} RETURNING 1) "
        f"SELECT (SELECT CASE count(*) WHEN 1 THEN '1' ELSE '{LEASE_LOST}' END "
        "FROM completed)::int; COMMIT"
    )


def lease_lost_in_database(error: Exception) -> bool:
    """Whether ``error`` is :func:`committing`'s fence failing: the cast's own message, not a
    context line that could quote stored text (the headers' ``jsonb``, say)."""
    cause = error.__cause__
    if getattr(cause, "sqlstate", None) != "22P02":
        return False
    return LEASE_LOST in (getattr(getattr(cause, "diag", None), "message_primary", None) or "")


@cache
def _binds_on_client(cursor_factory: type) -> bool:
    import psycopg  # only reached on PostgreSQL with psycopg 3

    return issubclass(cursor_factory, psycopg.ClientCursor)


@cache  # looked up for every parameter of every new key: the model's fields never change
def _field(name: str) -> Field[Any, Any]:
    model_field = IdempotencyRecord._meta.get_field(name)
    assert isinstance(model_field, Field)
    return model_field


@cache
def record_statements(alias: str) -> RecordStatements:
    connection = connections[alias]
    quote = connection.ops.quote_name
    table = quote(IdempotencyRecord._meta.db_table)

    def column(name: str) -> str:
        db_column = _field(name).column
        assert db_column is not None
        return quote(db_column)

    features = connection.features
    columns = ", ".join(column(name) for name in INSERT_FIELDS)

    def insert_statement(clock: DatabaseClock | None) -> str | None:
        placeholders = ", ".join(_placeholders(INSERT_FIELDS, clock))
        if features.supports_update_conflicts_with_target and (
            features.can_return_columns_from_insert
        ):
            return (
                f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) "
                f"ON CONFLICT ({column('scope')}, {column('key')}) DO NOTHING "
                f"RETURNING {column('id')}"
            )
        if connection.vendor == "mysql":
            # No ON CONFLICT (nor RETURNING on MySQL): IGNORE skips the duplicate key. It would
            # also turn a too-long value into a warning, but every value is bounded before it
            # gets here (keys by MAX_KEY_LENGTH <= 255, fingerprints are 64 hex digits).
            return f"INSERT IGNORE INTO {table} ({columns}) VALUES ({placeholders})"
        return None

    plain_completion = connection.vendor == "postgresql"
    completion_commits = plain_completion and _psycopg3()

    def complete_statement(clock: DatabaseClock | None) -> str:
        placeholders = _placeholders(COMPLETE_FIELDS, clock)
        if plain_completion:  # the headers come as JSON text (or the field's Jsonb): cast
            index = COMPLETE_FIELDS.index("response_headers")
            placeholders[index] = f"{placeholders[index]}::jsonb"
        assignments = ", ".join(
            f"{column(name)} = {placeholder}"
            for name, placeholder in zip(COMPLETE_FIELDS, placeholders, strict=True)
        )
        return (
            f"UPDATE {table} SET {column('state')} = '{COMPLETED}', {assignments}, "
            f"{column('locked_until')} = NULL WHERE {column('id')} = %s "
            f"AND {column('lease_token')} = %s AND {column('state')} = '{IN_PROGRESS}'"
        )

    def read_statement(clock: DatabaseClock | None) -> str:
        fields = ", ".join(column(name) for name in ("id", *READ_FIELDS))
        now = clock.now if clock else "NULL"
        return (
            f"SELECT {fields}, {now} FROM {table} "
            f"WHERE {column('scope')} = %s AND {column('key')} = %s"
        )

    clock = database_clock(connection)
    complete_with_interval = None
    if clock is not None:
        complete_with_interval = complete_statement(clock)
        # complete_on_db_clock() writes the expiry over the one now + interval the text has.
        assert complete_with_interval.count(clock.later) == 1
    insert = insert_statement(None)
    insert_returns_id = connection.vendor != "mysql"
    complete = complete_statement(None)
    # Through the (scope, key) unique index (see the lock order above); the token makes it this
    # reservation's row, the state keeps a completed outcome.
    condition = (
        f"{column('scope')} = %s AND {column('key')} = %s "
        f"AND {column('lease_token')} = %s AND {column('state')} = '{IN_PROGRESS}'"
    )
    release = f"DELETE FROM {table} WHERE {condition}"
    if connection.vendor == "mysql":
        # MariaDB's optimizer walks the key-only index for this DELETE (its row first, then the
        # unique entry: the deadlock). Only the multiple-table syntax takes an index hint.
        unique = quote("idempotency_scope_key_unique")
        release = f"DELETE {table} FROM {table} FORCE INDEX ({unique}) WHERE {condition}"
    return RecordStatements(
        insert,
        complete,
        release,
        insert_returns_id,
        clock,
        insert_on_db_clock=insert_statement(clock) if clock else None,
        complete_with_interval=complete_with_interval,
        take_write_lock=f"UPDATE {table} SET {column('id')} = {column('id')} WHERE 1 = 0",
        read={False: read_statement(None), True: read_statement(clock)},
        plain_completion=plain_completion,
        completion_commits=completion_commits,
    )


def _psycopg3() -> bool:
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return bool(is_psycopg3)
