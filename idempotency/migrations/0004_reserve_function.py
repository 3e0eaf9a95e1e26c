"""PostgreSQL: one function that reserves a key or, when the key is taken, returns its row.

A replay then costs one round trip (the function's two statements run in the server, their
plans cached per connection) instead of an INSERT that collides and a SELECT. The store calls it
where it exists and falls back to the two statements where it does not (a test database
created without migrations); see idempotency.reservation. A no-op on other databases.

The function's name carries a version: a change to it or to the columns it writes creates
``idempotency_reserve_v2`` in a new migration, so that code and schema of different releases
never call each other's function.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

# VOLATILE (the default): each statement takes a new snapshot, so the SELECT sees the row of a
# duplicate that committed while the INSERT waited for it. SECURITY INVOKER (the default): the
# caller's privileges, resolved through the caller's search_path like the ORM's statements.
CREATE = """
CREATE OR REPLACE FUNCTION idempotency_reserve_v1(
    p_scope varchar, p_key varchar, p_fingerprint varchar, p_method varchar, p_path text,
    p_token uuid, p_now timestamptz, p_lease interval, p_keep interval)
RETURNS TABLE (
    reserved boolean, id bigint, state varchar, fingerprint varchar, method varchar,
    path text, response_status smallint, response_headers jsonb, response_body bytea,
    locked_until timestamptz, expires_at timestamptz, db_now timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    -- p_now NULL: the database's clock (the statement's start, as the plain INSERT writes it).
    v_now timestamptz := coalesce(p_now, statement_timestamp());
    v_id bigint;
BEGIN
    INSERT INTO idempotency_idempotencyrecord AS r (
        scope, key, fingerprint, method, path, state, response_headers, response_body,
        lease_token, locked_until, created_at, expires_at)
    VALUES (
        p_scope, p_key, p_fingerprint, p_method, p_path, 'in_progress', '[]'::jsonb, ''::bytea,
        p_token, v_now + p_lease, v_now, v_now + p_keep)
    ON CONFLICT (scope, key) DO NOTHING
    RETURNING r.id INTO v_id;
    IF v_id IS NOT NULL THEN
        RETURN QUERY SELECT true, v_id, NULL::varchar, NULL::varchar, NULL::varchar, NULL::text,
            NULL::smallint, NULL::jsonb, NULL::bytea, NULL::timestamptz, NULL::timestamptz,
            NULL::timestamptz;
        RETURN;
    END IF;
    -- Taken: the row as it is now (none if it was released or purged since), with the
    -- database's now read after the INSERT's wait on the database's clock.
    RETURN QUERY SELECT false, r.id, r.state, r.fingerprint, r.method, r.path,
            r.response_status::smallint, r.response_headers, r.response_body, r.locked_until,
            r.expires_at, CASE WHEN p_now IS NULL THEN clock_timestamp() END
        FROM idempotency_idempotencyrecord r
        WHERE r.scope = p_scope AND r.key = p_key;
END
$$
"""
DROP = (
    "DROP FUNCTION IF EXISTS idempotency_reserve_v1("
    "varchar, varchar, varchar, varchar, text, uuid, timestamptz, interval, interval)"
)


def forwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("idempotency", "0003_exact_key_collation"),
    ]

    operations = [
        # The hint lets a router that places the record table by model place the function too.
        migrations.RunPython(
            forwards, backwards, elidable=False, hints={"model_name": "idempotencyrecord"}
        ),
    ]
