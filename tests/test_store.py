"""The store's protocol: reservation, takeover after the lease, fencing, expiry, release."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from idempotency.models import IdempotencyRecord
from idempotency.store import (
    InProgress,
    LeaseLostError,
    Mismatch,
    RecordStore,
    Replay,
    Reserved,
    StoredResponse,
)
from tests.factories import IdempotencyRecordFactory

pytestmark = pytest.mark.django_db(transaction=True)

LEASE = timedelta(seconds=60)
EXPIRY = timedelta(hours=24)
OUTCOME = StoredResponse(201, [("Content-Type", "application/json")], b'{"id": 1}')


@pytest.fixture(params=["native", "orm"])
def store(request, clock, monkeypatch):
    """Each test runs on the native INSERT ... ON CONFLICT and on the ORM fallback."""
    if request.param == "orm":
        from idempotency import store as store_module

        native = store_module.record_statements
        monkeypatch.setattr(
            store_module,
            "record_statements",
            lambda alias: dataclasses.replace(native(alias), insert=None),
        )
    return RecordStore(clock=clock)


def reserve(store, key="k", fingerprint="f", method="POST", path="/p"):
    return store.reserve(
        scope="s",
        key=key,
        fingerprint=fingerprint,
        method=method,
        path=path,
        lease=LEASE,
        expiry=EXPIRY,
    )


def test_new_key_is_reserved_with_a_lease(store, clock):
    decision = reserve(store)
    assert isinstance(decision, Reserved)
    assert not decision.taken_over
    record = IdempotencyRecord.objects.get()
    assert record.state == "in_progress"
    assert record.lease_token == decision.token
    assert record.locked_until == clock.now + LEASE
    assert record.expires_at == clock.now + EXPIRY


def test_reservation_is_committed_before_the_operation(store):
    """Another connection sees the reservation at once (it is not inside a transaction)."""
    from django.db import connection

    reserve(store)
    assert not connection.in_atomic_block
    assert IdempotencyRecord.objects.filter(state="in_progress").exists()


def test_duplicate_within_the_lease_is_in_progress(store, clock):
    reserve(store)
    clock.advance(seconds=45)
    decision = reserve(store)
    assert decision == InProgress(retry_after=timedelta(seconds=15))


def test_duplicate_after_the_lease_takes_the_key_over_with_a_new_token(store, clock):
    first = reserve(store)
    clock.advance(seconds=61)
    second = reserve(store)
    assert isinstance(second, Reserved)
    assert second.taken_over
    assert second.record_id == first.record_id
    assert second.token != first.token
    assert IdempotencyRecord.objects.get().locked_until == clock.now + LEASE


def test_fenced_out_holder_cannot_complete(store, clock):
    first = reserve(store)
    clock.advance(seconds=61)
    second = reserve(store)

    with pytest.raises(LeaseLostError):
        store.complete(first, OUTCOME)
    assert IdempotencyRecord.objects.get().state == "in_progress"

    store.complete(second, OUTCOME)
    assert isinstance(reserve(store), Replay)


def test_fenced_out_holder_cannot_release_the_new_holders_key(store, clock):
    first = reserve(store)
    clock.advance(seconds=61)
    reserve(store)
    store.release(first)
    assert IdempotencyRecord.objects.get().state == "in_progress"


def test_holder_past_its_lease_may_still_complete_if_nobody_took_over(store, clock):
    first = reserve(store)
    clock.advance(seconds=120)
    store.complete(first, OUTCOME)
    assert IdempotencyRecord.objects.get().state == "completed"


def test_completed_key_replays_the_stored_outcome(store):
    store.complete(reserve(store), OUTCOME)
    assert reserve(store) == Replay(OUTCOME)


def test_completed_key_with_another_fingerprint_is_a_mismatch(store):
    store.complete(reserve(store, method="POST", path="/payments"), OUTCOME)
    assert reserve(store, fingerprint="other") == Mismatch("POST", "/payments")


def test_in_progress_key_with_another_fingerprint_is_a_mismatch(store):
    reserve(store)
    assert isinstance(reserve(store, fingerprint="other"), Mismatch)


def test_released_key_is_free(store):
    store.release(reserve(store))
    assert not IdempotencyRecord.objects.exists()
    assert isinstance(reserve(store), Reserved)


def test_expired_key_is_new_even_with_another_fingerprint(store, clock):
    store.complete(reserve(store), OUTCOME)
    clock.advance(hours=24)
    decision = reserve(store, fingerprint="other", path="/other")
    assert isinstance(decision, Reserved)
    assert not decision.taken_over
    record = IdempotencyRecord.objects.get()
    assert (record.state, record.fingerprint, record.path) == ("in_progress", "other", "/other")
    assert record.response_body in (b"", memoryview(b""))
    assert record.expires_at == clock.now + EXPIRY


def test_scopes_are_independent(store):
    reserve(store)
    other = store.reserve(
        scope="other",
        key="k",
        fingerprint="f",
        method="POST",
        path="/p",
        lease=LEASE,
        expiry=EXPIRY,
    )
    assert isinstance(other, Reserved)


def test_record_str_names_key_state_and_request():
    record = IdempotencyRecordFactory.build(key="pay_1", path="/payments")
    assert str(record) == "pay_1 (completed, POST /payments)"


def test_unique_constraint_holds_in_the_database():
    from django.db import IntegrityError

    IdempotencyRecordFactory(scope="s", key="k")
    with pytest.raises(IntegrityError):
        IdempotencyRecordFactory(scope="s", key="k")


def test_release_reports_whether_the_key_was_still_this_reservations(store, clock):
    first = reserve(store)
    clock.advance(seconds=61)
    second = reserve(store)
    assert store.release(first) is False
    assert store.release(second) is True


def test_failed_attempt_that_was_taken_over_answers_lease_lost(store, clock):
    from idempotency.attempts import begin
    from idempotency.exceptions import IdempotencyLeaseLost

    def attempt():
        return begin(
            store,
            sender=None,
            request=None,
            scope="s",
            key="k",
            fingerprint="f",
            method="POST",
            path="/p",
            lease=LEASE,
            expiry=EXPIRY,
        )

    first = attempt()
    clock.advance(seconds=61)
    attempt()  # takes the key over
    with pytest.raises(IdempotencyLeaseLost) as raised, first.holding():
        raise RuntimeError("crashed after losing the lease")
    assert isinstance(raised.value.__context__, RuntimeError)
    assert IdempotencyRecord.objects.get().state == "in_progress"  # the new holder's
