"""PostgreSQL's reserve-or-read function (migration 0004): where the store may call it.

The function reserves a new key or returns the row of a taken one, in one round trip. A database
migrated without it (pytest-django's ``--no-migrations``, a project that has not run this
release's migrations yet) gets the INSERT and, on a collision, the SELECT instead: the store
asks once per process and database, and again after every ``migrate`` in that process (other
processes started before the migration keep the two statements until they restart).
"""

from __future__ import annotations

from datetime import timedelta
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
def call(*, clock_given: bool, lease: timedelta, keep: timedelta) -> str:
    """The call, with its rows as ``(reserved, id, READ_FIELDS..., db_now)``: the read's row
    behind a flag. Parameters: scope, key, fingerprint, method, path, token, and the clock's now
    where ``clock_given`` (else NULL: the database's). The durations, a handful per project, are
    written into its text: no interval to adapt per call."""
    now = "%s" if clock_given else "NULL"
    return (
        f"SELECT {COLUMNS} FROM {NAME}(%s, %s, %s, %s, %s, %s, {now}, "
        f"{postgresql_interval(lease)}, {postgresql_interval(keep)})"
    )


# The function's columns, cast where Python receives the same value either way: psycopg sets up
# a loader per column type on every cursor, and these casts leave five types where there were
# eight (three fewer loaders per call, most calls being new keys). JSONB arrives as its text, as
# Django's own loader gives it; varchar as str; smallint as int.
COLUMNS = (
    "reserved, id, state::text, fingerprint::text, method::text, path, "
    "response_status::bigint, response_headers::text, response_body, locked_until, expires_at, "
    "db_now"
)


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
