"""The new key's path, made cheaper (issue 11): what it stores and how its blocks end.

The completion's values reach PostgreSQL as the driver adapts them instead of through each
field's preparation, and the attempt's blocks are classes instead of generators. Each must store
and decide exactly what the ORM's preparation and the generators did.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from idempotency import signals
from idempotency.attempts import begin
from idempotency.exceptions import IdempotencyLeaseLost, TransactionAborted
from idempotency.models import IdempotencyRecord
from idempotency.statements import LEASE_LOST, record_statements
from idempotency.store import RecordStore, StoredResponse
from tests.testapp.models import Widget

pytestmark = pytest.mark.django_db(transaction=True)

HOUR = timedelta(hours=1)


def reserved_attempt(store: RecordStore, key: str = "k"):
    """The attempt that holds ``key`` in the scope the tests read (a new key)."""
    return begin(
        store,
        sender=None,
        request=None,
        scope="scope",
        key=key,
        fingerprint="f" * 64,
        method="POST",
        path="/p",
        lease=HOUR,
        expiry=HOUR,
    )


def _store(clock: str) -> RecordStore:
    """On the database's clock, or on the app's (the field path's completion)."""
    return RecordStore() if clock == "database" else RecordStore(clock=timezone.now)


def _record(key: str = "k") -> IdempotencyRecord:
    return IdempotencyRecord.objects.get(scope="scope", key=key)


OUTCOMES = [
    StoredResponse(201, [("Content-Type", "application/json"), ("Location", "/p/1")], b'{"a":1}'),
    StoredResponse(200, [], b""),
    # Latin-1 header text, quotes and backslashes in JSON, NUL and high bytes in the body.
    StoredResponse(
        409, [("Content-Disposition", 'attachment; filename="r\\é.txt"')], b"\x00\xff\x80 end"
    ),
]


@pytest.mark.parametrize("outcome", OUTCOMES, ids=["created", "empty", "awkward"])
@pytest.mark.parametrize("clock", ["database", "app"])
def test_the_completion_stores_what_the_orm_would(outcome, clock):
    """On the database's clock PostgreSQL takes the plain values; the app's clock still goes
    through the fields: both store the outcome exactly, and a replay returns it."""
    store = _store(clock)
    attempt = reserved_attempt(store)
    with attempt.holding(), attempt.transaction() as operation:
        operation.complete(outcome)
    record = _record()
    assert record.state == IdempotencyRecord.State.COMPLETED
    assert record.response_status == outcome.status
    assert record.response_headers == [list(header) for header in outcome.headers]
    assert bytes(record.response_body) == outcome.body
    assert reserved_attempt(store) == outcome  # the replay


def test_postgresql_completes_with_plain_values_only_on_its_clock():
    statements = record_statements(connection.alias)
    assert statements.plain_completion is (connection.vendor == "postgresql")
    if statements.plain_completion:
        assert "::jsonb" in statements.complete
        assert "::jsonb" in (statements.complete_with_interval or "")


def test_an_interrupt_in_the_operation_frees_the_key_and_stays_an_interrupt():
    store = RecordStore()
    attempt = reserved_attempt(store)
    with pytest.raises(KeyboardInterrupt), attempt.holding(), attempt.transaction():
        Widget.objects.create(name="never", size=1)
        raise KeyboardInterrupt
    assert not IdempotencyRecord.objects.filter(key="k").exists()
    assert not Widget.objects.exists()


def test_an_error_after_the_completion_rolls_both_back_and_frees_the_key():
    store = RecordStore()
    attempt = reserved_attempt(store)
    with (
        pytest.raises(ZeroDivisionError),
        attempt.holding(),
        attempt.transaction() as operation,
    ):
        Widget.objects.create(name="never", size=1)
        operation.complete(OUTCOMES[0])
        1 / 0  # noqa: B018
    # The completion waits for the block's end (it may commit: test_completion_commits).
    assert not operation.completed and not operation.committed
    assert not IdempotencyRecord.objects.filter(key="k").exists()
    assert not Widget.objects.exists()


def test_a_lease_taken_over_during_the_operation_answers_lease_lost_and_keeps_the_other():
    store = RecordStore()
    attempt = reserved_attempt(store)
    # Another attempt took the key over: its token is the record's now.
    IdempotencyRecord.objects.filter(key="k").update(
        lease_token="00000000-0000-0000-0000-0000000000ff"
    )
    with (
        pytest.raises(IdempotencyLeaseLost) as raised,
        attempt.holding(),
        attempt.transaction() as operation,
    ):
        Widget.objects.create(name="fenced", size=1)
        operation.complete(OUTCOMES[0])
    assert not operation.completed and not operation.committed
    assert not Widget.objects.exists()  # on PostgreSQL: the COMMIT after the fence never ran
    assert _record().state == IdempotencyRecord.State.IN_PROGRESS  # the other holder's
    if record_statements(connection.alias).commits_in_completion(connection):
        # The fence failed in the database, refusing the COMMIT sent with it.
        assert LEASE_LOST in str(raised.value.__context__.__cause__)
    # The connection is usable, outside any transaction.
    assert connection.get_autocommit() and not connection.in_atomic_block
    next_attempt = reserved_attempt(store, key="next")
    with next_attempt.holding(), next_attempt.transaction() as operation:
        operation.complete(OUTCOMES[1])
    assert _record("next").state == IdempotencyRecord.State.COMPLETED


def test_a_callback_that_raises_after_the_commit_leaves_the_outcome_stored(caplog):
    store = RecordStore()
    attempt = reserved_attempt(store)
    announced = []

    def receiver(**kwargs):
        announced.append(kwargs["status"])

    def broken():
        raise RuntimeError("callback")

    signals.completed.connect(receiver)
    try:
        with (
            caplog.at_level(logging.ERROR, logger="idempotency"),
            attempt.holding(),
            attempt.transaction() as operation,
        ):
            Widget.objects.create(name="kept", size=1)
            transaction.on_commit(broken)
            operation.complete(OUTCOMES[0])
    finally:
        signals.completed.disconnect(receiver)
    assert operation.committed and operation.completed
    assert announced == [201]  # once, although Django ran no callback after the broken one
    assert any("raised after the outcome was stored" in r.getMessage() for r in caplog.records)
    assert _record().state == IdempotencyRecord.State.COMPLETED
    assert Widget.objects.get().name == "kept"


def test_a_failed_transaction_is_logged_once_rolled_back_and_stores_nothing(caplog):
    from django.db import IntegrityError

    store = RecordStore()
    attempt = reserved_attempt(store)
    Widget.objects.create(name="taken", size=1)
    with (
        caplog.at_level(logging.ERROR, logger="idempotency"),
        pytest.raises(TransactionAborted),
        attempt.holding(),
        attempt.transaction() as operation,
    ):
        with suppress(IntegrityError):  # caught without a savepoint: the transaction is broken
            Widget.objects.create(id=Widget.objects.get().id, name="again", size=1)
        operation.complete(OUTCOMES[0])
    assert operation.aborted and not operation.committed
    assert sum("without a savepoint" in r.getMessage() for r in caplog.records) == 1
    assert not IdempotencyRecord.objects.filter(key="k").exists()


@pytest.mark.parametrize("clock", ["database", "app"])
def test_a_status_left_unset_is_stored_as_null_on_both_paths(clock):
    """Outside the contract (the entry points always pass an int), but as the field stores it."""
    store = _store(clock)
    attempt = reserved_attempt(store)
    with attempt.holding(), attempt.transaction() as operation:
        operation.complete(StoredResponse(None, [], b""))  # type: ignore[arg-type]
    assert _record().response_status is None
