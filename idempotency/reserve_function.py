"""PostgreSQL's reserve-or-read function (migration 0004): where the store may call it.

The function reserves a new key or returns the row of a taken one, in one round trip. A database
migrated without it (pytest-django's ``--no-migrations``, a project that has not run this
release's migrations yet) gets the INSERT and, on a collision, the SELECT instead: the store
asks once per process and database, and again after every ``migrate`` in that process (other
processes started before the migration keep the two statements until they restart).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from django.db import ProgrammingError
from django.db.backends.base.base import BaseDatabaseWrapper

from idempotency.dbclock import postgresql_interval

NAME = "idempotency_reserve_v1"
SIGNATURE = (
    f"{NAME}(varchar, varchar, varchar, varchar, text, uuid, timestamptz, interval, interval)"
)


@lru_cache(maxsize=256)
def call(*, clock_given: bool, lease: timedelta, keep: timedelta, aware: bool) -> str:
    """The call, with its rows as ``(id, taken)``: ``taken`` NULL for a new key, else the taken
    key's row as :func:`taken_values` reads it. Parameters: scope, key, fingerprint, method,
    path, token, and the clock's now where ``clock_given`` (else NULL: the database's). The
    durations, a handful per project, are written into its text: no interval to adapt per call.
    ``aware``: ``settings.USE_TZ``, which decides what the row's times mean."""
    now = "%s" if clock_given else "NULL"
    return (
        f"SELECT {columns(aware)} FROM {NAME}(%s, %s, %s, %s, %s, %s, {now}, "
        f"{postgresql_interval(lease)}, {postgresql_interval(keep)})"
    )


# Most calls are new keys, which need only the id: psycopg sets up a loader for each column
# type on every cursor, and two columns (int8, text) cost a new key about 24 000 instructions
# less than the function's twelve (tools/count_instructions.py). A taken key's row comes as one
# JSON array in READ_FIELDS order, then db_now: the body as hex (as bytea's text form is); each
# time as microseconds since the epoch, of the instant under USE_TZ, else of the wall time in
# the session's time zone, which is what Django's loader gives (a naive datetime).
_TAKEN = (
    "state",
    "fingerprint",
    "method",
    "path",
    "response_status",
    "response_headers",
    "encode(response_body, 'hex')",
)
_TIMES = ("locked_until", "expires_at", "db_now")


@lru_cache(maxsize=2)
def columns(aware: bool) -> str:
    times = [f"(EXTRACT(EPOCH FROM {_wall(name, aware)}) * 1000000)::bigint" for name in _TIMES]
    taken = ", ".join([*_TAKEN, *times])
    return f"id, CASE WHEN NOT reserved THEN JSON_BUILD_ARRAY({taken})::text END"


def _wall(column: str, aware: bool) -> str:
    return column if aware else f"{column}::timestamp"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def taken_values(connection: BaseDatabaseWrapper, taken: str) -> list[Any]:
    """The taken key's row of :func:`columns`: READ_FIELDS' values, then db_now, as the ORM's
    read of the columns gives them (the headers parsed, the body as bytes, the times as
    datetimes: aware in the connection's time zone under USE_TZ, else naive)."""
    row: list[Any] = json.loads(taken)
    *values, body, locked_until, expires_at, db_now = row
    values.append(bytes.fromhex(body))
    zone = connection.timezone  # None: USE_TZ is off
    for micros in (locked_until, expires_at, db_now):
        if micros is None:
            values.append(None)
        elif zone is None:
            values.append(_NAIVE_EPOCH + timedelta(microseconds=micros))
        else:
            values.append((_EPOCH + timedelta(microseconds=micros)).astimezone(zone))
    return values


# undefined_function, insufficient_privilege
_GONE = frozenset({"42883", "42501"})

_found: dict[tuple[str, str], bool] = {}


def _database(connection: BaseDatabaseWrapper) -> tuple[str, str]:
    return connection.alias, str(connection.settings_dict.get("NAME"))


def available(connection: BaseDatabaseWrapper) -> bool:
    if connection.vendor != "postgresql":
        return False
    database = _database(connection)
    found = _found.get(database)
    if found is None:
        _found[database] = found = _look_up(connection)
    return found


def _look_up(connection: BaseDatabaseWrapper) -> bool:
    """Whether the function exists and this role may call it (a hardened database may not
    grant EXECUTE on new functions to PUBLIC; the table's privileges then still serve).

    A catalog lookup that raises no error when the function is missing, so it may run inside a
    caller's transaction. On the driver's cursor, so that Django's query log does not put it in
    whichever request or test of a process came first (assertNumQueries); otherwise as Django's
    own cursor runs a statement: a failed health check reconnects first, and a driver's error
    becomes Django's (a lost connection: OperationalError, 503) and marks the connection.
    """
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors, connection.connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(HAS_FUNCTION_PRIVILEGE(TO_REGPROCEDURE(%s)::oid, 'EXECUTE'), FALSE)",
            [SIGNATURE],
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def missing(connection: BaseDatabaseWrapper, error: ProgrammingError) -> bool:
    """The call failed because the function is gone, or this role may no longer call it,
    since it was found: from now on the store uses the two statements."""
    if getattr(error.__cause__, "sqlstate", None) not in _GONE:
        return False
    _found[_database(connection)] = False
    return True


def forget(**_kwargs: Any) -> None:
    """A ``post_migrate`` receiver: a migration may have created or dropped the function."""
    _found.clear()
