"""PostgreSQL's reserve-or-read function (migration 0005): where the store may call it.

The function reserves a new key or returns the row of a taken one, in one round trip. A database
migrated without it (pytest-django's ``--no-migrations``, a project that has not run this
release's migrations yet) gets the INSERT and, on a collision, the SELECT instead: the store
asks once per process and database, and again after every ``migrate`` in that process (other
processes started before the migration keep the two statements until they restart).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from django.db import ProgrammingError
from django.db.backends.base.base import BaseDatabaseWrapper

from idempotency.dbclock import postgresql_interval

NAME = "idempotency_reserve_v2"
SIGNATURE = (
    f"{NAME}(varchar, varchar, varchar, varchar, text, uuid, timestamptz, interval, interval)"
)


@lru_cache(maxsize=256)
def call(*, clock_given: bool, lease: timedelta, keep: timedelta) -> str:
    """The call, with its one row as ``(id, taken)``: ``taken`` NULL for a new key, else the
    taken key's row as :func:`taken_values` reads it (both NULL: taken, then released or purged
    before the function read it). Parameters: scope, key, fingerprint, method, path, token, and
    the clock's now where ``clock_given`` (else NULL: the database's). The durations, a handful
    per project, are written into its text: no interval to adapt per call."""
    now = "%s" if clock_given else "NULL"
    return (
        f"SELECT id, taken FROM {NAME}(%s, %s, %s, %s, %s, %s, {now}, "
        f"{postgresql_interval(lease)}, {postgresql_interval(keep)})"
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def taken_values(connection: BaseDatabaseWrapper, taken: str) -> list[Any]:
    """The taken key's row as the function returns it: READ_FIELDS' values, then db_now, as
    the ORM's read of the columns gives them: the headers parsed, the body as bytes, each time
    as the driver loads a timestamptz (the instant in the session's time zone, keeping
    ``fold``), then as Django's loader relabels it: aware in the connection's time zone under
    USE_TZ, else naive."""
    row: list[Any] = json.loads(taken)
    *values, body, locked_until, expires_at, db_now = row
    values.append(bytes.fromhex(body))
    zone = connection.timezone  # None: USE_TZ is off
    session = _session_zone(connection) if zone is None else zone
    for micros in (locked_until, expires_at, db_now):
        if micros is None:
            values.append(None)
        else:
            instant = (_EPOCH + timedelta(microseconds=micros)).astimezone(session)
            values.append(instant if zone is not None else instant.replace(tzinfo=None))
    return values


def _session_zone(connection: BaseDatabaseWrapper) -> tzinfo:
    """The session's ``TimeZone``, as psycopg 3 reads it for its timestamptz loader; psycopg 2:
    the zone Django sets the session to."""
    info = getattr(connection.connection, "info", None)
    zone = getattr(info, "timezone", None)
    return zone if isinstance(zone, tzinfo) else ZoneInfo(connection.timezone_name)


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
