"""PostgreSQL: ``idempotency_reserve_v2``, the reserve-or-read function returning one row of two
columns: the id, and for a taken key its row as one JSON array.

v1 (migration 0004) returns a set of twelve columns. A set-returning function runs through a
tuplestore, and the call's longer select list is planned on every call: measured against the
hand-written floor's plain ``INSERT`` (``tools/statement_forms.py``), v1 cost a new key's
database about 0.03 ms more, v2 about the same as the floor, and v2's replay the least of all.
Two columns also cost the app's driver less per call than twelve (one loader per column type).

v1 stays: processes of the previous release, running beside this one during a deploy, still
call it. A later release may drop it.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

# The taken row, in READ_FIELDS order, then the database's now: the body as hex (as bytea's text
# form is), each time as microseconds since the epoch (its instant: the app converts it as the
# driver would, to the session's zone). VOLATILE (the default): each statement takes a new
# snapshot, so the SELECT sees the row of a duplicate that committed while the INSERT waited for
# it. SECURITY INVOKER (the default): the caller's privileges and search_path, as the ORM's.
CREATE = """
CREATE OR REPLACE FUNCTION idempotency_reserve_v2(
    p_scope varchar, p_key varchar, p_fingerprint varchar, p_method varchar, p_path text,
    p_token uuid, p_now timestamptz, p_lease interval, p_keep interval,
    OUT id bigint, OUT taken text)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    -- p_now NULL: the database's clock (the statement's start, as the plain INSERT writes it).
    v_now timestamptz := coalesce(p_now, statement_timestamp());
BEGIN
    INSERT INTO idempotency_idempotencyrecord AS r (
        scope, key, fingerprint, method, path, state, response_headers, response_body,
        lease_token, locked_until, created_at, expires_at)
    VALUES (
        p_scope, p_key, p_fingerprint, p_method, p_path, 'in_progress', '[]'::jsonb, ''::bytea,
        p_token, v_now + p_lease, v_now, v_now + p_keep)
    ON CONFLICT (scope, key) DO NOTHING
    RETURNING r.id INTO id;
    IF id IS NOT NULL THEN
        RETURN;
    END IF;
    -- Taken: the row as it is now (NULLs if it was released or purged since), with the
    -- database's now read after the INSERT's wait on the database's clock.
    SELECT r.id, json_build_array(
            r.state, r.fingerprint, r.method, r.path, r.response_status, r.response_headers,
            encode(r.response_body, 'hex'),
            (EXTRACT(EPOCH FROM r.locked_until) * 1000000)::bigint,
            (EXTRACT(EPOCH FROM r.expires_at) * 1000000)::bigint,
            CASE WHEN p_now IS NULL
                THEN (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::bigint END
        )::text
        INTO id, taken
        FROM idempotency_idempotencyrecord r
        WHERE r.scope = p_scope AND r.key = p_key;
END
$$
"""
DROP = (
    "DROP FUNCTION IF EXISTS idempotency_reserve_v2("
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
        ("idempotency", "0004_reserve_function"),
    ]

    operations = [
        # The hint lets a router that places the record table by model place the function too.
        migrations.RunPython(
            forwards, backwards, elidable=False, hints={"model_name": "idempotencyrecord"}
        ),
    ]
