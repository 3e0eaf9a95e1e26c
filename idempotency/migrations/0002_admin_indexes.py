"""Indexes for the admin at millions of rows: newest first, in progress, exact key.

The table is written on every protected request, so on PostgreSQL the indexes are built
``CONCURRENTLY``: writes go on while they build (a plain CREATE INDEX would block every
protected request for as long as the build takes). Should a concurrent build fail, PostgreSQL
leaves an INVALID index behind: drop it and migrate again.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models


class AddIndexConcurrentlyOnPostgres(migrations.AddIndex):
    """``AddIndex``, built without blocking writes where the database can (PostgreSQL)."""

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor != "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
            return
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.add_index(model, self.index, concurrently=True)

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor != "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
            return
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.remove_index(model, self.index, concurrently=True)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("idempotency", "0001_initial"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="idempotencyrecord",
            index=models.Index(fields=["created_at"], name="idempotency_created_at_idx"),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="idempotencyrecord",
            index=models.Index(fields=["key"], name="idempotency_key_idx"),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="idempotencyrecord",
            index=models.Index(
                condition=models.Q(("state", "in_progress")),
                fields=["created_at"],
                name="idempotency_in_progress_idx",
            ),
        ),
    ]
