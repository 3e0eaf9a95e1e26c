"""The store's protocol: reservation, takeover after the lease, fencing, expiry, release."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from django.db import connection

from idempotency.models import IdempotencyRecord
from idempotency.store import (
    InProgress,
    LeaseLostError,
    Mismatch,
    RecordStore,
    Replay,
    Reserved,
    StoredResponse,
    Taken,
)
from tests.factories import IdempotencyRecordFactory

pytestmark = pytest.mark.django_db(transaction=True)

LEASE = timedelta(seconds=60)
EXPIRY = timedelta(hours=24)
OUTCOME = StoredResponse(201, [("Content-Type", "application/json")], b'{"id": 1}')


@pytest.fixture(params=["native", "statements", "orm"])
def store(request, clock, monkeypatch):
    """Each test runs on the database's own reservation (PostgreSQL's function, elsewhere
    INSERT ... ON CONFLICT or INSERT IGNORE), on the INSERT and SELECT that stand in for the
    function where it is missing, and on the ORM fallback."""
    from idempotency import reserve_function
    from idempotency import store as store_module

    if request.param != "native":
        if request.param == "statements" and connection.vendor != "postgresql":
            pytest.skip("the same statements as native: only PostgreSQL has the function")
        monkeypatch.setattr(reserve_function, "available", lambda connection: False)
    if request.param == "orm":
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


def reserve_for(store, lease, expiry, fingerprint="f"):
    return store.reserve(
        scope="s",
        key="k",
        fingerprint=fingerprint,
        method="POST",
        path="/p",
        lease=lease,
        expiry=expiry,
    )


def test_a_live_lease_keeps_the_key_in_progress_past_its_expiry(store, clock):
    """An expiry shorter than the lease never lets a retry run beside the live holder."""
    holder = reserve_for(store, lease=timedelta(seconds=60), expiry=timedelta(seconds=10))
    clock.advance(seconds=30)
    retry = reserve_for(store, lease=timedelta(seconds=60), expiry=timedelta(seconds=10))
    assert retry == InProgress(retry_after=timedelta(seconds=30))
    other = reserve_for(store, timedelta(seconds=60), timedelta(seconds=10), fingerprint="g")
    assert isinstance(other, Mismatch)

    store.complete(holder, OUTCOME)  # the holder did not lose its key
    assert IdempotencyRecord.objects.get().state == "completed"


def test_an_outcome_is_replayed_for_the_expiry_counted_from_its_completion(store, clock):
    holder = reserve_for(store, lease=timedelta(seconds=60), expiry=timedelta(seconds=10))
    clock.advance(seconds=30)
    store.complete(holder, OUTCOME)
    assert IdempotencyRecord.objects.get().expires_at == clock.now + timedelta(seconds=10)

    clock.advance(seconds=9)
    assert reserve_for(store, timedelta(seconds=60), timedelta(seconds=10)) == Replay(OUTCOME)
    clock.advance(seconds=1)
    assert isinstance(reserve_for(store, timedelta(seconds=60), timedelta(seconds=10)), Reserved)


def test_a_takeover_extends_the_expiry_over_its_lease(store, clock):
    reserve_for(store, lease=timedelta(seconds=60), expiry=timedelta(seconds=90))
    clock.advance(seconds=61)
    taker = reserve_for(store, lease=timedelta(seconds=60), expiry=timedelta(seconds=90))
    assert isinstance(taker, Reserved) and taker.taken_over
    assert IdempotencyRecord.objects.get().expires_at >= clock.now + timedelta(seconds=60)

    clock.advance(seconds=40)  # past the first reservation's expiry, within the taker's lease
    retry = reserve_for(store, lease=timedelta(seconds=60), expiry=timedelta(seconds=90))
    assert retry == InProgress(retry_after=timedelta(seconds=20))
    store.complete(taker, OUTCOME)
    assert reserve_for(store, timedelta(seconds=60), timedelta(seconds=90)) == Replay(OUTCOME)


def test_a_new_reservation_does_not_expire_before_its_lease_runs_out(store, clock):
    reserve_for(store, lease=timedelta(seconds=60), expiry=timedelta(seconds=10))
    record = IdempotencyRecord.objects.get()
    assert record.expires_at >= record.locked_until


def test_a_second_completion_of_the_same_reservation_changes_nothing(store, clock):
    holder = reserve(store)
    store.complete(holder, OUTCOME)
    clock.advance(seconds=5)
    with pytest.raises(LeaseLostError):
        store.complete(holder, StoredResponse(500, [], b"overwritten"))
    record = IdempotencyRecord.objects.get()
    assert (record.response_status, bytes(record.response_body)) == (201, b'{"id": 1}')
    assert record.completed_at == clock.now - timedelta(seconds=5)
    assert reserve(store) == Replay(OUTCOME)


def test_release_after_the_completion_changes_nothing(store):
    holder = reserve(store)
    store.complete(holder, OUTCOME)
    assert store.release(holder) is False
    assert reserve(store) == Replay(OUTCOME)


def test_an_expired_record_whose_lease_ran_out_is_taken_over(store, clock):
    """Its holder may still be running: the new attempt fences it out, and says so."""
    first = reserve_for(store, lease=timedelta(seconds=60), expiry=timedelta(seconds=90))
    clock.advance(seconds=91)
    second = reserve_for(store, timedelta(seconds=60), timedelta(seconds=90), fingerprint="g")
    assert isinstance(second, Reserved)
    assert second.taken_over
    assert store.release(first) is False
    with pytest.raises(LeaseLostError):
        store.complete(first, OUTCOME)
    store.complete(second, OUTCOME)
    assert IdempotencyRecord.objects.get().fingerprint == "g"


class RowVanishesAfterTheCollision(RecordStore):
    """A store whose colliding row is released by another worker before it is read."""

    vanishings = 1

    def _insert(self, scope, key, *args):
        claim = super()._insert(scope, key, *args)
        if isinstance(claim, Taken) and self.vanishings:
            self.vanishings -= 1
            IdempotencyRecord.objects.filter(scope=scope, key=key).delete()
            # PostgreSQL's function reads within the call: it would have found no row.
            return Taken(None, read=True) if claim.read else claim
        return claim


def test_reserve_inserts_again_when_the_row_it_collided_with_vanished(store, clock):
    held = reserve(store)
    vanishing = RowVanishesAfterTheCollision(clock=clock)
    decision = reserve(vanishing)
    assert isinstance(decision, Reserved)
    assert not decision.taken_over
    assert decision.record_id != held.record_id
    with pytest.raises(LeaseLostError):
        store.complete(held, OUTCOME)
    vanishing.complete(decision, OUTCOME)
    assert reserve(store) == Replay(OUTCOME)


class KeyChurns(RecordStore):
    """Each INSERT collides, and the row is gone again by the time it is read (locked or not):
    other attempts reserve and release the key between every two statements of this one."""

    def _insert(self, *args):
        return Taken(None, read=False)

    def _read(self, *args, **kwargs):
        return None


def test_a_key_that_churns_under_every_attempt_is_in_progress_not_an_error(clock):
    """Answered 'in progress' (a 409 with a retry hint), never a RuntimeError (a 500)."""
    assert isinstance(reserve(KeyChurns(clock=clock)), InProgress)


def test_a_late_completion_is_replayed_and_kept_by_the_purge(store, clock):
    """A holder past its lease and the record's first expiry, that nobody took over, completes:
    its outcome is replayed (and kept) for the expiry from its completion."""
    from idempotency.purge import Purger

    holder = reserve_for(store, lease=timedelta(seconds=10), expiry=timedelta(seconds=5))
    clock.advance(seconds=30)
    store.complete(holder, OUTCOME)
    Purger(clock=clock).run()
    assert reserve_for(store, timedelta(seconds=10), timedelta(seconds=5)) == Replay(OUTCOME)


@pytest.mark.parametrize("meanwhile", ["takeover", "completion"])
def test_a_write_between_the_purges_pick_and_delete_keeps_the_record(store, clock, meanwhile):
    """The purge's second filter: where the pick is a statement of its own (InnoDB: a plain
    read, then the rows locked through the key index), a takeover or a late completion may land
    between the pick and the delete; the record must stay. Elsewhere one statement picks and
    deletes (tests/test_purge.py), and nothing can land between them."""
    from django.db import connections

    if connections[store.using].vendor != "mysql":
        pytest.skip("one statement picks and deletes here")

    from idempotency.purge import Purger

    holder = reserve_for(store, lease=timedelta(seconds=10), expiry=timedelta(seconds=5))
    clock.advance(seconds=11)  # lease run out, record expired: purgeable
    purger = Purger(clock=clock)
    landed = []
    picks = []

    def write_after_the_pick(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith("SELECT") and '"expires_at" <=' in sql.replace("`", '"') and not picks:
            picks.append(sql)
            clock.advance(seconds=1)  # the purge's cutoff is already fixed
            if meanwhile == "takeover":
                landed.append(reserve_for(store, timedelta(seconds=10), timedelta(seconds=5)))
            else:
                store.complete(holder, OUTCOME)
                landed.append(holder)
        return result

    with connections[store.using].execute_wrapper(write_after_the_pick):
        purger.run()
    assert landed
    record = IdempotencyRecord.objects.get()
    if meanwhile == "takeover":
        assert isinstance(landed[0], Reserved)
        store.complete(landed[0], OUTCOME)
    assert record.state == ("completed" if meanwhile == "completion" else "in_progress")
    assert reserve_for(store, timedelta(seconds=10), timedelta(seconds=5)) == Replay(OUTCOME)


def test_purge_racing_takeovers_never_deletes_a_taken_key(clock):
    """Real threads, a connection each: a purge in batches of one and two workers taking over
    the same abandoned, expired keys. Every key ends completed by exactly one taker."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    from idempotency.purge import Purger

    keys = [f"k{i}" for i in range(40)]
    store = RecordStore(clock=clock)
    abandoned = [
        store.reserve(
            scope="s",
            key=key,
            fingerprint="f",
            method="POST",
            path="/p",
            lease=timedelta(seconds=10),
            expiry=timedelta(seconds=5),
        )
        for key in keys
    ]
    clock.advance(seconds=30)  # every lease ran out and every record expired
    barrier = threading.Barrier(3)

    def take(order):
        completed = []
        for key in order:
            decision = store.reserve(
                scope="s",
                key=key,
                fingerprint="f",
                method="POST",
                path="/p",
                lease=LEASE,
                expiry=EXPIRY,
            )
            if isinstance(decision, Reserved):
                store.complete(decision, OUTCOME)  # raises if purged or taken under it
                completed.append(key)
        return completed

    def worker(i):
        try:
            barrier.wait()
            if i == 0:
                return Purger(batch_size=1, clock=clock).run().deleted
            return take(keys if i == 1 else keys[::-1])
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=3) as pool:
        _purged, first, second = pool.map(worker, range(3))
    assert sorted(first + second) == sorted(keys)  # each key completed once
    assert set(IdempotencyRecord.objects.values_list("state", flat=True)) == {"completed"}
    for reservation in abandoned:
        with pytest.raises(LeaseLostError):
            store.complete(reservation, OUTCOME)


def synchronous_commit(alias="default"):
    from django.db import connections

    with connections[alias].cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return str(cursor.fetchone()[0])


@pytest.mark.postgres
def test_a_reservation_inside_a_callers_transaction_leaves_its_commit_synchronous(clock):
    """The reservation leaves every commit synchronous: inside a caller's transaction a
    ``synchronous_commit`` set by it would last until the caller's commit, whose writes must be
    durable (see docs/databases.md for why the reservation's own commit stays synchronous too)."""
    from django.db import transaction

    store = RecordStore(clock=clock)
    with transaction.atomic():
        assert isinstance(reserve(store, key="inside"), Reserved)
        assert synchronous_commit() == "on"
    assert isinstance(reserve(store, key="outside"), Reserved)
    assert synchronous_commit() == "on"  # its own transaction's setting went with it
    assert IdempotencyRecord.objects.filter(key__in=["inside", "outside"]).count() == 2
