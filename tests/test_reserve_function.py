"""PostgreSQL's reserve-or-read function (migration 0005) and the statements that stand in for
it where it is missing: the store keeps every decision either way."""

from __future__ import annotations

from datetime import datetime, timedelta
from importlib import import_module

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import ProgrammingError, connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from idempotency import reserve_function
from idempotency.models import IdempotencyRecord
from idempotency.rows import record_from_row, record_from_values
from idempotency.statements import record_statements
from idempotency.store import Mismatch, RecordStore, Replay, Reserved, StoredResponse

function_migration = import_module("idempotency.migrations.0005_reserve_function_v2")

OUTCOME = StoredResponse(201, [("Content-Type", "application/json")], b'{"id": 1}')


def reserve(store, key="k", fingerprint="f"):
    return store.reserve(
        scope="s",
        key=key,
        fingerprint=fingerprint,
        method="POST",
        path="/p",
        lease=timedelta(seconds=60),
        expiry=timedelta(hours=1),
    )


def the_protocol_holds(store):
    """New key, replay, mismatch: what every reservation path decides."""
    held = reserve(store)
    assert isinstance(held, Reserved)
    store.complete(held, OUTCOME)
    assert reserve(store) == Replay(OUTCOME)
    assert isinstance(reserve(store, fingerprint="other"), Mismatch)


def drop_function():
    with connection.cursor() as cursor:
        cursor.execute(function_migration.DROP)


def create_function():
    with connection.cursor() as cursor:
        cursor.execute(function_migration.CREATE)


@pytest.fixture(autouse=True)
def looked_up_again():
    reserve_function.forget()
    yield
    reserve_function.forget()


@pytest.mark.django_db
def test_migrated_postgresql_has_it_and_other_databases_do_not():
    assert reserve_function.available(connection) is (connection.vendor == "postgresql")


@pytest.mark.postgres
@pytest.mark.django_db
def test_missing_inside_a_callers_transaction_the_two_statements_stand_in():
    """The test's transaction rolls the DROP back. The lookup raises no error, so it may run
    inside a caller's transaction, which then goes on."""
    drop_function()
    store = RecordStore()
    with CaptureQueriesContext(connection) as context:
        the_protocol_holds(store)
    assert not any(reserve_function.NAME in query["sql"] for query in context.captured_queries)
    assert reserve_function.available(connection) is False


@pytest.fixture
def dropped_after_it_was_found():
    """The function was found, then dropped; created again after the test."""
    assert reserve_function.available(connection)
    drop_function()
    yield
    create_function()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_dropped_after_it_was_found_the_store_falls_back_outside_a_transaction(
    dropped_after_it_was_found,
):
    the_protocol_holds(RecordStore())
    assert reserve_function.available(connection) is False


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_dropped_after_it_was_found_a_callers_transaction_gets_the_error(
    dropped_after_it_was_found,
):
    """The failed call broke the caller's transaction: going on in it would hide that."""
    store = RecordStore()
    with pytest.raises(ProgrammingError), transaction.atomic():
        reserve(store)
    assert reserve_function.available(connection) is False
    the_protocol_holds(store)  # outside a transaction now: the two statements


@pytest.mark.django_db(transaction=True)
def test_migrating_back_and_forth_drops_and_creates_it_and_the_store_follows():
    """``migrate`` tells the store to look again (post_migrate): no stale answer either way."""
    store = RecordStore()
    postgresql = connection.vendor == "postgresql"
    try:
        call_command("migrate", "idempotency", "0003", verbosity=0)
        assert reserve_function.available(connection) is False
        the_protocol_holds(store)
    finally:
        call_command("migrate", "idempotency", verbosity=0)
    assert reserve_function.available(connection) is postgresql
    with CaptureQueriesContext(connection) as context:
        assert reserve(store) == Replay(OUTCOME)
    assert len(context.captured_queries) == (1 if postgresql else 2)


@pytest.mark.django_db
def test_the_lookup_is_no_query_in_djangos_log():
    """Else it would land in whichever request or test of a process came first, and a
    project's assertNumQueries would count one more statement depending on test order."""
    with CaptureQueriesContext(connection) as context:
        reserve_function.available(connection)
    assert context.captured_queries == []


class RecordsElsewhere:
    """A router that places the record table by model, on another database."""

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if model_name == "idempotencyrecord":
            return db == "elsewhere"
        return None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_router_placing_the_table_by_model_places_the_function_with_it(settings):
    """The migration tells routers which model its function serves: one that keeps the table
    off this database keeps the migration's DROP off it too (without the hint, a router asked
    about no model lets it run anywhere)."""
    settings.DATABASE_ROUTERS = [RecordsElsewhere()]
    try:
        call_command("migrate", "idempotency", "0003", verbosity=0)
        assert reserve_function.available(connection)
    finally:
        settings.DATABASE_ROUTERS = []
        call_command("migrate", "idempotency", verbosity=0)


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("clock_given", [False, True], ids=["db-clock", "app-clock"])
@pytest.mark.parametrize(
    "zones",
    [
        {"USE_TZ": True, "TIME_ZONE": "UTC"},
        {"USE_TZ": True, "TIME_ZONE": "America/New_York"},
        {"USE_TZ": False, "TIME_ZONE": "Asia/Kolkata"},
        {"USE_TZ": False, "TIME_ZONE": "America/New_York"},
    ],
    ids=["aware-utc", "aware-new-york", "naive-kolkata", "naive-new-york"],
)
def test_a_taken_keys_row_as_the_call_returns_it_is_the_record_the_columns_give(clock_given, zones):
    """The function returns a taken key's row as one JSON array (two columns: fewer loaders
    per cursor). The record built from it has every value, of the same type and time zone,
    that the record the plain read's columns give has (the ORM's loaders and converters),
    aware or naive, in any zone."""
    with override_settings(**zones):
        store = RecordStore()
        held = reserve(store, key="json")
        store.complete(
            held,
            StoredResponse(
                201,
                [("Content-Type", "application/json"), ("Location", '/p/é"\\\n')],
                b'\x00{"id": 1}\xff',
            ),
        )
        aware = settings.USE_TZ
        call = reserve_function.call(
            clock_given=clock_given,
            lease=timedelta(seconds=60),
            keep=timedelta(hours=1),
        )
        arguments = ["s", "json", "f", "POST", "/p", held.token]
        if clock_given:
            arguments.append(store._app_now())
        with connection.cursor() as cursor:
            cursor.execute(call, arguments)
            record_id, taken = cursor.fetchone()
            cursor.execute(record_statements("default").read[not clock_given], ["s", "json"])
            plain = cursor.fetchone()
        assert record_id == plain[0]
        values = reserve_function.taken_values(connection, taken)
        got = record_from_values("default", "s", "json", [record_id, *values])
        want = record_from_row(connection, "default", "s", "json", plain)
    names = [field.attname for field in IdempotencyRecord._meta.concrete_fields]
    for name in names:
        mine, theirs = getattr(got, name), getattr(want, name)
        assert (mine, type(mine)) == (theirs, type(theirs)), name
        if isinstance(mine, datetime):
            assert (mine.tzinfo, mine.fold) == (theirs.tzinfo, theirs.fold), name
            assert (mine.tzinfo is None) is not aware, name
    assert got.response_headers == [
        ["Content-Type", "application/json"],
        ["Location", '/p/é"\\\n'],
    ]
    assert bytes(got.response_body) == b'\x00{"id": 1}\xff'
    # db_now: read at each call (the clock moved between them), or absent on the app's clock.
    mine, theirs = getattr(got, "db_now", None), getattr(want, "db_now", None)
    if clock_given:
        assert mine is None and theirs is None
    else:
        assert type(mine) is type(theirs) and mine.tzinfo == theirs.tzinfo
        assert timedelta(0) <= theirs - mine < timedelta(seconds=5)
        assert abs(mine + timedelta(hours=1) - got.expires_at) < timedelta(seconds=5)
