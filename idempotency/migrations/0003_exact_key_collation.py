"""Keys and scopes compare byte for byte on MySQL and MariaDB (a binary, no-pad collation).

A no-op on PostgreSQL and SQLite, whose default collations already compare exactly. On
MySQL/MariaDB the columns are redefined with ``ALTER TABLE ... MODIFY``, which rebuilds the
(scope, key) unique index and the key index under the new collation. No two existing rows can
collide: a binary collation tells apart more values than any other, never fewer.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

from idempotency.collation import EXACT_COLUMNS, exact_collation


def _modify(schema_editor: Any, model: Any, collation: str | None) -> None:
    connection = schema_editor.connection
    quote = schema_editor.quote_name
    changes = []
    for name in EXACT_COLUMNS:
        field = model._meta.get_field(name)
        db_type = field.db_type(connection)
        collate = f" CHARACTER SET utf8mb4 COLLATE {collation}" if collation else ""
        changes.append(f"MODIFY {quote(field.column)} {db_type}{collate} NOT NULL")
    schema_editor.execute(f"ALTER TABLE {quote(model._meta.db_table)} {', '.join(changes)}")


def forwards(apps: Any, schema_editor: Any) -> None:
    collation = exact_collation(schema_editor.connection)
    if collation is not None:
        _modify(schema_editor, apps.get_model("idempotency", "IdempotencyRecord"), collation)


def backwards(apps: Any, schema_editor: Any) -> None:
    if exact_collation(schema_editor.connection) is not None:
        # Back to the table's default collation (as 0001 created the columns).
        _modify(schema_editor, apps.get_model("idempotency", "IdempotencyRecord"), None)


class Migration(migrations.Migration):
    dependencies = [
        ("idempotency", "0002_admin_indexes"),
    ]

    operations = [
        migrations.RunPython(
            forwards,
            backwards,
            atomic=False,
            elidable=False,
            hints={"model_name": "idempotencyrecord"},  # a router placing the table by model
        ),
    ]
