"""PostgreSQL's reserve-or-read function (migration 0004): where the store may call it.

The function reserves a new key or returns the row of a taken one, in one round trip. A database
migrated without it (pytest-django's ``--no-migrations``, a project that has not run this
release's migrations yet) gets the INSERT and, on a collision, the SELECT instead: the store
asks once per process and database, and again after every ``migrate`` in that process (other
processes started before the migration keep the two statements until they restart).
"""

from __future__ import annotations

from typing import Any

from django.db import ProgrammingError
from django.db.backends.base.base import BaseDatabaseWrapper

NAME = "idempotency_reserve_v1"
SIGNATURE = (
    f"{NAME}(varchar, varchar, varchar, varchar, text, uuid, timestamptz, interval, interval)"
)
# (reserved, id, READ_FIELDS..., db_now): the read's row behind a flag.
CALL = f"SELECT * FROM {NAME}(%s, %s, %s, %s, %s, %s, %s, %s, %s)"
_UNDEFINED_FUNCTION = "42883"

_found: dict[tuple[str, str], bool] = {}


def _database(connection: BaseDatabaseWrapper) -> tuple[str, str]:
    return connection.alias, str(connection.settings_dict.get("NAME"))


def available(connection: BaseDatabaseWrapper) -> bool:
    if connection.vendor != "postgresql":
        return False
    database = _database(connection)
    found = _found.get(database)
    if found is None:
        # A catalog lookup that raises no error when the function is missing, so it may run
        # inside a caller's transaction. On the driver's cursor: Django's query log would put
        # it in whichever request or test came first (assertNumQueries), once per process.
        connection.ensure_connection()
        with connection.connection.cursor() as cursor:
            cursor.execute("SELECT to_regprocedure(%s) IS NOT NULL", [SIGNATURE])
            row = cursor.fetchone()
        _found[database] = found = bool(row and row[0])
    return found


def missing(connection: BaseDatabaseWrapper, error: ProgrammingError) -> bool:
    """The call failed because the function is gone (dropped since it was found): from now on
    the store uses the two statements."""
    if getattr(error.__cause__, "sqlstate", None) != _UNDEFINED_FUNCTION:
        return False
    _found[_database(connection)] = False
    return True


def forget(**_kwargs: Any) -> None:
    """A ``post_migrate`` receiver: a migration may have created or dropped the function."""
    _found.clear()
