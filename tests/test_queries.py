"""Queries the mixin adds, counted (the README quotes these numbers)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from idempotency import reserve_function

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/test/widgets"


def post(api, key="q"):
    return api.post(URL, {"name": "a"}, format="json", headers={"Idempotency-Key": key})


def statements(context):
    """The SQL as PostgreSQL and SQLite quote it (MySQL's backticks as double quotes), with
    MySQL's ``INSERT IGNORE`` read as the INSERT it is."""
    return [
        query["sql"].replace("`", '"').replace("INSERT IGNORE INTO", "INSERT INTO")
        for query in context.captured_queries
    ]


RECORDS = '"idempotency_idempotencyrecord"'


def uses_function():
    return reserve_function.available(connection)


def is_reservation(query):
    return query.startswith(f"INSERT INTO {RECORDS}") or query.startswith(
        f"SELECT id, taken FROM {reserve_function.NAME}("
    )


def completes(query):
    """The fenced completion, or on PostgreSQL the completion that also commits."""
    if connection.vendor == "postgresql":
        return query.startswith(f"WITH completed AS (UPDATE {RECORDS}") and query.endswith(
            "; COMMIT"
        )
    return query.startswith(f"UPDATE {RECORDS}")


def reads_record(query):
    return query.startswith("SELECT ") and f"FROM {RECORDS}" in query


def collides(queries):
    """The statements of a reservation that collided, read back: PostgreSQL's function alone,
    elsewhere the INSERT and a SELECT. Returns how many they are."""
    assert is_reservation(queries[0])
    if uses_function():
        return 1
    assert reads_record(queries[1])
    return 2


def captured(api, key="q"):
    """The statements of one request (the first of its process too: the store's lookup of its
    function is no query of Django's)."""
    with CaptureQueriesContext(connection) as context:
        response = post(api, key)
    return response, statements(context)


def test_new_key_adds_two_statements_and_a_transaction(api):
    response, queries = captured(api)
    assert response.status_code == 201
    assert is_reservation(queries[0])
    assert queries[1].startswith("BEGIN")  # the operation's transaction
    assert queries[2].startswith('INSERT INTO "testapp_widget"')  # the operation's one write
    assert completes(queries[3])  # complete, fenced
    # The write and the outcome together (on PostgreSQL the completion's own round trip
    # committed: Django logs its COMMIT, which finds nothing to do; test_completion_commits).
    assert queries[4] == "COMMIT"
    assert len(queries) == 5


def test_replay_issues_one_call_or_two_statements_and_runs_nothing(api):
    post(api)
    response, queries = captured(api)
    assert response["Idempotent-Replayed"] == "true"
    assert len(queries) == collides(queries) == (1 if connection.vendor == "postgresql" else 2)


def test_a_live_holders_key_is_decided_without_a_lock(api, clocked_store):
    from tests.test_mixin_contract import hold_key

    hold_key(api, clocked_store)
    with CaptureQueriesContext(connection) as context:
        response = api.post(
            URL, {"name": "a"}, format="json", headers={"Idempotency-Key": "pay_8f7a9c2"}
        )
    queries = statements(context)
    assert response.status_code == 409
    assert len(queries) == collides(queries)  # a live lease: 409, nothing written


def test_a_lapsed_lease_is_taken_over_under_a_row_lock(api, clocked_store, clock):
    from tests.test_mixin_contract import hold_key

    hold_key(api, clocked_store, lease_seconds=30)
    clock.advance(seconds=31)
    with CaptureQueriesContext(connection) as context:
        response = api.post(
            URL, {"name": "a"}, format="json", headers={"Idempotency-Key": "pay_8f7a9c2"}
        )
    queries = statements(context)
    assert response.status_code == 201
    locked_read = collides(queries) + 1
    assert queries[locked_read - 1].startswith("BEGIN")
    assert reads_record(queries[locked_read])
    if connection.features.has_select_for_update:
        assert queries[locked_read].endswith("FOR UPDATE")
    assert queries[locked_read + 1].startswith(f"UPDATE {RECORDS}")  # the new lease
    assert queries[locked_read + 2] == "COMMIT"


def test_failed_operation_is_rolled_back_and_its_key_released(api):
    with CaptureQueriesContext(connection) as context:
        response = api.post(
            URL,
            {"name": "a", "behaviour": "503"},
            format="json",
            headers={"Idempotency-Key": "q"},
        )
    queries = statements(context)
    assert response.status_code == 503
    assert is_reservation(queries[0])
    assert queries[1].startswith("BEGIN")
    assert queries[2].startswith('INSERT INTO "testapp_widget"')  # rolled back
    assert queries[3] == "ROLLBACK"
    # Release: one autocommitted DELETE, through the (scope, key) index (MySQL's multiple-table
    # form names the table twice, to take the index hint).
    assert queries[4].startswith('DELETE "idempotency_idempotencyrecord"') or queries[4].startswith(
        'DELETE FROM "idempotency_idempotencyrecord"'
    )
    assert len(queries) == 5
