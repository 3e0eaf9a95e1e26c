"""The benchmark's own PostgreSQL database: created fresh, migrated, seeded, filled fast."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

RECORD_TABLE = "idempotency_idempotencyrecord"

# Stored records that look like the demo's: completed payments, keys like uuid4, spread over a
# thousand users' scopes (one row in ten in the benchmark user's own scope), bodies of a realistic
# size, created a millisecond apart (so expiry order is an order). One INSERT ... SELECT
# generate_series: ~1 000 000 rows in well under a minute.
FILL_SQL = f"""
INSERT INTO {RECORD_TABLE} (
    scope, key, fingerprint, method, path, state, response_status, response_headers,
    response_body, lease_token, locked_until, created_at, completed_at, expires_at
)
SELECT
    CASE WHEN g %% 10 = 0 THEN %(own_scope)s ELSE 'auth.user:' || (1000000 + g %% 1000) END,
    md5('bench' || g)::uuid::text,
    md5(g::text) || md5((g + 1)::text),
    'POST',
    '/payments',
    'completed',
    201,
    jsonb_build_array(
        jsonb_build_array('Content-Type', 'application/json'),
        jsonb_build_array('Location', '/payments/pmt_' || left(md5(g::text), 24))
    ),
    convert_to(
        '{{"paymentId":"pmt_' || left(md5(g::text), 24) || '","status":"charged",'
        || '"customerId":"cust_123","amount":100,"currency":"USD",'
        || '"createdAt":"2026-01-01T12:00:00.000000Z"}}',
        'UTF8'
    ),
    NULL,
    NULL,
    now() - %(age)s::interval + (g %% 1000000) * interval '1 millisecond',
    now() - %(age)s::interval + (g %% 1000000) * interval '1 millisecond',
    now() - %(age)s::interval + (g %% 1000000) * interval '1 millisecond' + %(expiry)s::interval
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
"""

LIVE = {"age": "1 hour", "expiry": "24 hours"}  # completed an hour ago, replayable for 23 more
EXPIRED = {"age": "2 days", "expiry": "24 hours"}  # expired a day ago: what purge removes


def parts(url: str) -> dict[str, str]:
    split = urlsplit(url)
    return {
        "host": split.hostname or "127.0.0.1",
        "port": str(split.port or 5432),
        "user": split.username or "postgres",
        "dbname": split.path.lstrip("/"),
        **({"password": split.password} if split.password else {}),
    }


def connect(url: str, **overrides: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(make_conninfo("", **{**parts(url), **overrides}), autocommit=True)


def recreate(url: str) -> None:
    """Drop and create the database, so every run starts from the same empty state.

    Only a database whose name starts with ``bench``: a URL pointing at real data by mistake
    must not cost that data.
    """
    name = parts(url)["dbname"]
    if not name.startswith("bench"):
        raise SystemExit(f"Refusing to drop database {name!r}: its name must start with 'bench'.")
    with connect(url, dbname="postgres") as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def fill(url: str, first: int, last: int, own_scope: str, *, expired: bool = False) -> None:
    """Insert records number ``first`` to ``last`` (inclusive), then :func:`vacuum`.

    The VACUUM runs now so that autovacuum does not wake up on the new rows mid-measurement.
    """
    if last >= first:
        with connect(url) as connection:
            params = {"own_scope": own_scope, "first": first, "last": last}
            connection.execute(FILL_SQL, {**params, **(EXPIRED if expired else LIVE)})
    vacuum(url)


def vacuum(url: str) -> None:
    """VACUUM ANALYZE the records, then CHECKPOINT: the bulk load's deferred writes land now,
    not in the middle of a measurement (needs a superuser, as the default URL's postgres is)."""
    with connect(url) as connection:
        connection.execute(f"VACUUM ANALYZE {RECORD_TABLE}")
        connection.execute("CHECKPOINT")


def truncate_records(url: str) -> None:
    with connect(url) as connection:
        connection.execute(f"TRUNCATE {RECORD_TABLE}")


def count(url: str, where: str = "true") -> int:
    with connect(url) as connection:
        row = connection.execute(f"SELECT count(*) FROM {RECORD_TABLE} WHERE {where}").fetchone()
    assert row is not None
    return int(row[0])


def server_version(url: str) -> str:
    with connect(url) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def backend_pids(url: str) -> list[int]:
    """PostgreSQL backends serving this database (the app's connections), not this one."""
    with connect(url) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (parts(url)["dbname"],),
        ).fetchall()
    return [int(row[0]) for row in rows]
