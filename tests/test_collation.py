"""Keys and scopes compare byte for byte on every database, and a check guards MySQL's tables.

Under MySQL/MariaDB's default collation (``utf8mb4_general_ci``) the (scope, key) unique index
took ``My-K1`` for ``my-k1`` (a replay of another key's outcome) and ``Tenant-A`` for
``tenant-a`` (one tenant's records served to another).
"""

from __future__ import annotations

import importlib
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection

from idempotency.checks import check_exact_key_collation
from idempotency.collation import exact_collation
from idempotency.models import IdempotencyRecord
from idempotency.store import RecordStore, Reserved

pytestmark = pytest.mark.django_db(transaction=True)

TABLE = IdempotencyRecord._meta.db_table


def reserve(store, scope, key):
    return store.reserve(
        scope=scope,
        key=key,
        fingerprint="f",
        method="POST",
        path="/p",
        lease=timedelta(seconds=60),
        expiry=timedelta(hours=1),
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("s", "my-k1"), ("s", "My-K1")),  # keys differing in case
        (("s", "cle"), ("s", "clé")),  # keys differing in an accent
        (("s", "k"), ("s", "k ")),  # a trailing space (PAD SPACE collations ignore it)
        (("tenant-a", "k"), ("Tenant-A", "k")),  # scopes differing in case
        (("tenant-é", "k"), ("tenant-e", "k")),  # scopes differing in an accent
    ],
)
def test_keys_and_scopes_that_differ_in_any_byte_are_different_keys(first, second):
    store = RecordStore()
    assert isinstance(reserve(store, *first), Reserved)
    assert isinstance(reserve(store, *second), Reserved)
    stored = set(IdempotencyRecord.objects.values_list("scope", "key"))
    assert stored == {first, second}


needs_mysql = pytest.mark.skipif(
    "exact_collation(connection) is None", reason="collations matter on MySQL/MariaDB only"
)


def alter_collation(collation):
    quote = connection.ops.quote_name
    changes = ", ".join(
        f"MODIFY {quote(name)} varchar(255) CHARACTER SET utf8mb4 COLLATE {collation} NOT NULL"
        for name in ("scope", "key")
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {quote(TABLE)} {changes}")


@pytest.fixture
def case_insensitive_table():
    """The table as a project made it before migration 0003, or by hand."""
    alter_collation("utf8mb4_general_ci")
    try:
        yield
    finally:
        alter_collation(exact_collation(connection))


@needs_mysql
def test_the_migrated_table_compares_exactly():
    assert check_exact_key_collation(databases=["default"]) == []


@needs_mysql
def test_e010_a_case_insensitive_table_through_manage_py_check_database(case_insensitive_table):
    out = StringIO()
    with pytest.raises(SystemCheckError) as raised:
        call_command("check", databases=["default"], stdout=out, stderr=out)
    assert "idempotency.E010" in str(raised.value)
    assert "utf8mb4_general_ci" in str(raised.value)
    assert "COLLATE utf8mb4_" in str(raised.value)  # the hint says what to type


@needs_mysql
def test_w004_before_the_migration_warns_without_stopping_migrate(case_insensitive_table):
    from django.db.migrations.recorder import MigrationRecorder

    recorder = MigrationRecorder(connection)
    recorder.record_unapplied("idempotency", "0003_exact_key_collation")
    try:
        (message,) = check_exact_key_collation(databases=["default"])
        assert message.id == "idempotency.W004"
        # The migration then fixes the table.
        from django.apps import apps

        migration = importlib.import_module("idempotency.migrations.0003_exact_key_collation")
        with connection.schema_editor(atomic=False) as editor:
            migration.forwards(apps, editor)
        assert check_exact_key_collation(databases=["default"]) == []
    finally:
        recorder.record_applied("idempotency", "0003_exact_key_collation")
