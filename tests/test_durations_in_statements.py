"""Leases and expiries written into the store's statements, not passed as parameters.

The reservation (PostgreSQL's function) and the completion on the database's clock carry their
durations in their text. They must land on the same deadlines as the parameter they replace,
on every database, for any duration a setting accepts.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection

from idempotency.dbclock import database_clock
from idempotency.models import IdempotencyRecord
from idempotency.options import MAX_DURATION
from idempotency.store import RecordStore, StoredResponse

pytestmark = pytest.mark.django_db(transaction=True)

DURATIONS = [
    timedelta(microseconds=1),
    timedelta(seconds=60),
    timedelta(seconds=3600.5),
    timedelta(hours=24),
    timedelta(days=2, seconds=5, microseconds=123456),
    timedelta(days=400, microseconds=999999),
    MAX_DURATION,
]


@pytest.mark.parametrize("duration", DURATIONS, ids=str)
def test_a_duration_in_the_text_is_the_parameter_it_replaces(duration):
    clock = database_clock(connection)
    assert clock is not None
    with connection.cursor() as cursor:
        # One statement: both read the same now.
        cursor.execute(
            f"SELECT {clock.later_by(duration)}, {clock.later}", [clock.interval(duration)]
        )
        written, passed = cursor.fetchone()
    assert written == passed


@pytest.fixture(params=["native", "statements"])
def store(request, monkeypatch):
    """On the database's clock; on PostgreSQL both through its function and without it."""
    from idempotency import reserve_function

    if request.param == "statements":
        if connection.vendor != "postgresql":
            pytest.skip("the same statements as native: only PostgreSQL has the function")
        monkeypatch.setattr(reserve_function, "available", lambda connection: False)
    return RecordStore()


def _close_to(measured: timedelta, expected: timedelta) -> bool:
    # SQLite's clock (STRFTIME's %f) has milliseconds; the others keep microseconds.
    tolerance = timedelta(milliseconds=1) if connection.vendor == "sqlite" else timedelta(0)
    return abs(measured - expected) <= tolerance


@pytest.mark.parametrize(
    ("lease", "expiry"),
    [
        (timedelta(seconds=7, microseconds=123456), timedelta(days=2, seconds=5, microseconds=7)),
        (timedelta(hours=3), timedelta(minutes=1)),  # an expiry shorter than the lease
    ],
    ids=["expiry-longer", "expiry-shorter"],
)
def test_deadlines_follow_the_durations_on_the_database_clock(store, lease, expiry):
    reserved = store.reserve(
        scope="s", key="k", fingerprint="f", method="POST", path="/p", lease=lease, expiry=expiry
    )
    record = IdempotencyRecord.objects.get(pk=reserved.record_id)
    assert _close_to(record.locked_until - record.created_at, lease)
    assert _close_to(record.expires_at - record.created_at, max(lease, expiry))

    store.complete(reserved, StoredResponse(201, [], b"{}"))
    record.refresh_from_db()
    assert record.state == IdempotencyRecord.State.COMPLETED
    assert _close_to(record.expires_at - record.completed_at, expiry)


def test_each_expiry_gets_its_own_completion_text():
    from idempotency.statements import record_statements

    statements = record_statements(connection.alias)
    if statements.clock is None:
        pytest.skip("no database clock here: the completion takes the app server's times")
    one = statements.complete_on_db_clock(timedelta(hours=24))
    other = statements.complete_on_db_clock(timedelta(hours=24, microseconds=1))
    assert one != other
    assert one == statements.complete_on_db_clock(timedelta(days=1))
