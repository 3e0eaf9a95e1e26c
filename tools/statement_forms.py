"""Database and app CPU per call of the reservation's candidate statement forms (PostgreSQL).

The numbers in docs/databases.md ("A replay is two statements, not one") come from this script:
each form reserves a new key, then collides with a completed one, the forms interleaved call by
call so that the machine's noise falls on all of them. Database CPU is the backend process's,
read from /proc/<pid>/schedstat (run it on the database's host).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/scratch python tools/statement_forms.py

It migrates that database (which creates the store's functions: v1, migration 0004, the previous
release's; v2, migration 0005, the one the store calls).
"""

from __future__ import annotations

import collections
import os
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from idempotency import reserve_function  # noqa: E402
from idempotency.statements import NOW, FromNow, record_statements  # noqa: E402

TABLE = "idempotency_idempotencyrecord"
READ = (
    "state, fingerprint, method, path, response_status, response_headers, response_body, "
    "locked_until, expires_at"
)


def main() -> None:
    call_command("migrate", verbosity=0)
    statements = record_statements("default")
    insert = statements.insert_on_db_clock
    assert insert is not None
    one_statement = (
        f"WITH reserved AS ({insert}) SELECT id, TRUE, {', '.join(['NULL'] * 9)}, "
        f"STATEMENT_TIMESTAMP() FROM reserved UNION ALL SELECT id, FALSE, {READ}, "
        f"STATEMENT_TIMESTAMP() FROM {TABLE} WHERE scope = %s AND key = %s "
        f"AND NOT EXISTS (SELECT FROM reserved)"
    )
    read = f"SELECT id, {READ}, STATEMENT_TIMESTAMP() FROM {TABLE} WHERE scope = %s AND key = %s"
    connection.ensure_connection()
    raw = connection.connection
    pid = raw.execute("SELECT pg_backend_pid()").fetchone()[0]

    def backend_cpu() -> float:
        # The backend's time on a CPU in nanoseconds (/proc/<pid>/stat counts 10 ms ticks).
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9

    def values(key: str) -> dict[str, Any]:
        return {
            "scope": "s",
            "key": key,
            "fingerprint": "f" * 64,
            "method": "POST",
            "path": "/payments",
            "state": "in_progress",
            "response_headers": [],
            "response_body": b"",
            "lease_token": uuid.uuid4(),
            "locked_until": FromNow(timedelta(seconds=60)),
            "created_at": NOW,
            "expires_at": FromNow(timedelta(hours=24)),
        }

    def two_statements(key: str, cursor_class: Any = psycopg.ClientCursor, **prepare: Any) -> None:
        cursor = cursor_class(raw)
        cursor.execute(insert, statements.insert_params(connection, values(key)), **prepare)
        if cursor.fetchone() is None:
            cursor.execute(read, ["s", key], **prepare)
            cursor.fetchone()

    def one(key: str, cursor_class: Any = psycopg.ClientCursor, **prepare: Any) -> None:
        params = [*statements.insert_params(connection, values(key)), "s", key]
        cursor = cursor_class(raw)
        cursor.execute(one_statement, params, **prepare)
        cursor.fetchone()

    def function(key: str) -> None:
        cursor = psycopg.ClientCursor(raw)
        params = ["s", key, "f" * 64, "POST", "/payments", uuid.uuid4()]
        cursor.execute(
            reserve_function.call(
                clock_given=False,
                lease=timedelta(seconds=60),
                keep=timedelta(hours=24),
            ),
            params,
        )
        cursor.fetchone()

    def function_v1(key: str) -> None:
        """The previous release's call: v1 (migration 0004), a set of twelve columns."""
        cursor = psycopg.ClientCursor(raw)
        params = ["s", key, "f" * 64, "POST", "/payments", uuid.uuid4()]
        cursor.execute(
            "SELECT reserved, id, state::text, fingerprint::text, method::text, path, "
            "response_status::bigint, response_headers::text, response_body, locked_until, "
            "expires_at, db_now FROM idempotency_reserve_v1(%s, %s, %s, %s, %s, %s, NULL, "
            "'60 seconds'::interval, '24 hours'::interval)",
            params,
        )
        cursor.fetchone()

    forms: dict[str, Callable[[str], None]] = {
        "INSERT, then SELECT on a collision": two_statements,
        "one statement (WITH ... UNION ALL)": one,
        "one statement, prepared": lambda key: one(key, psycopg.Cursor, prepare=True),
        "INSERT and SELECT, prepared": lambda key: two_statements(
            key, psycopg.Cursor, prepare=True
        ),
        "the PL/pgSQL function v1 (0004)": function_v1,
        "the PL/pgSQL function v2 (shipped)": function,
    }
    calls = int(os.environ.get("CALLS", "3000"))
    for path in ("new key", "replay"):
        totals: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
        for name, form in forms.items():
            form(f"{name}-completed")  # the replays' key, reserved once
        for _ in range(calls):
            for name, form in forms.items():
                key = f"{name}-completed" if path == "replay" else str(uuid.uuid4())
                database, app = backend_cpu(), time.process_time()
                form(key)
                totals[name][0] += backend_cpu() - database
                totals[name][1] += time.process_time() - app
        for name, (database, app) in totals.items():
            print(
                f"{path:8} {name:38} database {database / calls * 1000:.3f} ms"
                f"  app {app / calls * 1000:.3f} ms"
            )


if __name__ == "__main__":
    main()
