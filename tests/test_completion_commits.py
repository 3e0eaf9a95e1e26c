"""The completion that commits (issue 11): on PostgreSQL the operation's transaction ends with
the completion's own round trip, one fewer while the operation's row locks are held.

It may commit only a transaction that is the connection's own and ends with it: never a
caller's, never one a connection without autocommit keeps open, never after an error. Where it
commits, Django's own commit must find nothing left to do and run the callbacks as before.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from idempotency.models import IdempotencyRecord
from idempotency.operations import run_once
from idempotency.statements import LEASE_LOST, record_statements
from idempotency.store import RecordStore, StoredResponse
from tests.test_new_key_path import OUTCOMES, reserved_attempt
from tests.testapp.models import Widget

pytestmark = pytest.mark.django_db(transaction=True)

COMMITS = connection.vendor == "postgresql"
postgres_only = pytest.mark.skipif(not COMMITS, reason="the completion commits on PostgreSQL")


def completion(sql: str) -> bool:
    return "UPDATE" in sql and "idempotency_idempotencyrecord" in sql and "completed" in sql


@contextmanager
def status_after_completion():
    """The transaction status as each completion statement returns: PostgreSQL's, as psycopg
    saw it; elsewhere (where the completion never commits) Django's."""
    seen: list[str] = []

    def watch(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if completion(sql):
            if COMMITS:
                seen.append(connection.connection.info.transaction_status.name)
            else:
                seen.append("INTRANS" if connection.in_atomic_block else "IDLE")
        return result

    with connection.execute_wrapper(watch):
        yield seen


def make_widget(name: str = "w"):
    def operation():
        return Widget.objects.create(name=name, size=1).pk

    return operation


@postgres_only
def test_the_completion_commits_the_operation_in_its_own_round_trip():
    callbacks: list[str] = []

    def operation():
        transaction.on_commit(lambda: callbacks.append("operation's"))
        return Widget.objects.create(name="w", size=1).pk

    with status_after_completion() as seen, CaptureQueriesContext(connection) as captured:
        widget_id = run_once(operation, scope="s", key="k")
    # Committed as the completion returned: psycopg's commit() sends nothing for an idle one.
    assert seen == ["IDLE"]
    [sql] = [query["sql"] for query in captured.captured_queries if completion(query["sql"])]
    assert sql.endswith("; COMMIT")
    assert callbacks == ["operation's"]  # Django ran the block's callbacks after it
    assert connection.get_autocommit() and not connection.in_atomic_block
    assert Widget.objects.get().pk == widget_id
    assert IdempotencyRecord.objects.get(key="k").state == IdempotencyRecord.State.COMPLETED
    assert run_once(make_widget("again"), scope="s", key="k") == widget_id  # replayed


def test_a_callers_transaction_is_never_committed_by_the_completion():
    with (
        status_after_completion() as seen,
        CaptureQueriesContext(connection) as captured,
        pytest.raises(ZeroDivisionError),
        transaction.atomic(),
    ):
        run_once(make_widget(), scope="s", key="k")
        1 / 0  # noqa: B018  the caller's transaction fails after the key completed
    assert all(not query["sql"].endswith("COMMIT") for query in captured.captured_queries)
    assert seen == ["INTRANS"]  # still the caller's transaction
    assert not Widget.objects.exists()
    assert not IdempotencyRecord.objects.exists()  # rolled back with it: the key is free


def test_a_connection_without_autocommit_keeps_its_transaction_open():
    transaction.set_autocommit(False)
    try:
        run_once(make_widget(), scope="s", key="manual")
        assert connection.connection is not None
        assert IdempotencyRecord.objects.filter(key="manual").exists()  # in its transaction
        transaction.rollback()  # the caller decides: nothing was committed for it
    finally:
        transaction.set_autocommit(True)
    assert not Widget.objects.exists()
    assert not IdempotencyRecord.objects.filter(key="manual").exists()


def test_discard_after_complete_stores_nothing_and_frees_the_key():
    store = RecordStore()
    attempt = reserved_attempt(store)
    with attempt.holding(), attempt.transaction() as operation:
        Widget.objects.create(name="never", size=1)
        operation.complete(OUTCOMES[0])
        operation.discard()
    assert not operation.completed and not operation.aborted
    attempt.release()
    assert not Widget.objects.exists()
    assert not IdempotencyRecord.objects.exists()


@pytest.fixture
def deferred_unique():
    """A table whose unique constraint is checked at COMMIT, not at the INSERT."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE deferred_probe (n integer, "
            "CONSTRAINT deferred_probe_n UNIQUE (n) DEFERRABLE INITIALLY DEFERRED)"
        )
    yield "deferred_probe"
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE deferred_probe")


@postgres_only
def test_a_commit_that_fails_stores_nothing_and_frees_the_key(deferred_unique):
    def operation():
        with connection.cursor() as cursor:  # both INSERTs pass: the check waits for COMMIT
            cursor.execute(f"INSERT INTO {deferred_unique} VALUES (1), (1)")
        return Widget.objects.create(name="never", size=1).pk

    with pytest.raises(IntegrityError):
        run_once(operation, scope="s", key="k")
    assert connection.get_autocommit() and not connection.in_atomic_block
    assert not Widget.objects.exists()
    assert not IdempotencyRecord.objects.exists()  # released: a retry runs it again
    assert run_once(make_widget("retry"), scope="s", key="k") == Widget.objects.get().pk


@postgres_only
def test_server_side_binding_completes_then_commits_as_before():
    """Bound on the server, an execute runs one statement: the plain completion, then COMMIT."""
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.ensure_connection()
    connection.connection.cursor_factory = ServerBindingCursor
    try:
        assert not record_statements(connection.alias).commits_in_completion(connection)
        with CaptureQueriesContext(connection) as captured:
            widget_id = run_once(make_widget(), scope="s", key="k")
    finally:
        connection.close()
    sqls = [query["sql"] for query in captured.captured_queries]
    [sql] = [sql for sql in sqls if completion(sql)]
    assert sql.startswith("UPDATE") and "COMMIT" not in sql
    assert sqls[-1] == "COMMIT"
    assert Widget.objects.get().pk == widget_id
    assert IdempotencyRecord.objects.get(key="k").state == IdempotencyRecord.State.COMPLETED


def test_only_postgresql_with_psycopg_3_commits_in_the_completion():
    connection.ensure_connection()
    assert record_statements(connection.alias).commits_in_completion(connection) is COMMITS


@postgres_only
def test_another_invalid_text_error_quoting_the_marker_is_not_a_lost_lease():
    """Invalid JSON in the headers is SQLSTATE 22P02 too, and its context quotes the JSON, the
    marker's text included: only the cast's own message makes a lost lease."""
    from django.db import DataError

    from tests.test_new_key_path import reserved_attempt

    store = RecordStore()
    attempt = reserved_attempt(store)
    outcome = StoredResponse(201, [(LEASE_LOST, float("nan"))], b"")  # type: ignore[list-item]
    with (
        pytest.raises(DataError),
        attempt.holding(),
        attempt.transaction() as operation,
    ):
        operation.complete(outcome)
    assert not operation.completed
    assert not IdempotencyRecord.objects.exists()  # released
