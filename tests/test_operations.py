"""The programmatic guard: exactly-once work keyed by an event id, outside HTTP."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction

from idempotency import signals
from idempotency.exceptions import (
    IdempotencyKeyInUse,
    IdempotencyKeyInvalid,
    IdempotencyKeyReused,
    IdempotencyLeaseLost,
)
from idempotency.models import IdempotencyRecord
from idempotency.operations import idempotent_operation, run_once
from idempotency.store import RecordStore
from tests.test_concurrency import race
from tests.test_signals import captured, outcomes
from tests.testapp.models import Widget

pytestmark = pytest.mark.django_db(transaction=True)

SCOPE = "webhooks:test"


class Handler:
    """A webhook handler that counts its executions and writes one row each time."""

    def __init__(self, sleep=0.0, fail=False):
        self.calls = 0
        self.sleep = sleep
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self):
        with self.lock:
            self.calls += 1
        widget = Widget.objects.create(name="paid")
        if self.sleep:
            time.sleep(self.sleep)
        if self.fail:
            raise RuntimeError("handler crashed")
        return {"widget": widget.pk, "amount": Decimal("12.50")}


def test_first_delivery_runs_and_repeats_get_the_stored_result():
    handler = Handler()
    first = run_once(handler, scope=SCOPE, key="evt_1", fingerprint={"amount": 1250})
    second = run_once(handler, scope=SCOPE, key="evt_1", fingerprint={"amount": 1250})

    assert handler.calls == 1
    assert Widget.objects.count() == 1
    # Every delivery sees the same JSON form of the result, the first one included.
    assert first == second == {"widget": Widget.objects.get().pk, "amount": "12.50"}
    record = IdempotencyRecord.objects.get()
    assert (record.scope, record.key, record.state, record.method) == (
        SCOPE,
        "evt_1",
        "completed",
        "EVENT",
    )
    assert record.path.endswith("Handler")


def test_another_key_or_scope_is_another_operation():
    handler = Handler()
    run_once(handler, scope=SCOPE, key="evt_1")
    run_once(handler, scope=SCOPE, key="evt_2")
    run_once(handler, scope="webhooks:other", key="evt_1")
    assert handler.calls == 3


def test_a_failure_rolls_back_and_frees_the_key_for_redelivery():
    with pytest.raises(RuntimeError, match="handler crashed"):
        run_once(Handler(fail=True), scope=SCOPE, key="evt_1")
    assert not Widget.objects.exists()
    assert not IdempotencyRecord.objects.exists()

    handler = Handler()
    run_once(handler, scope=SCOPE, key="evt_1")
    assert handler.calls == 1


def test_the_same_key_with_another_fingerprint_is_refused():
    handler = Handler()
    run_once(handler, scope=SCOPE, key="evt_1", fingerprint={"amount": 1250})
    with pytest.raises(IdempotencyKeyReused):
        run_once(handler, scope=SCOPE, key="evt_1", fingerprint={"amount": 9999})
    assert handler.calls == 1


def test_a_key_held_by_another_worker_raises_in_use(clock):
    store = RecordStore(clock=clock)
    with idempotent_operation(scope=SCOPE, key="evt_1", store=store) as outer:
        assert outer.should_run
        clock.advance(seconds=45)
        with pytest.raises(IdempotencyKeyInUse) as excinfo:
            # Another worker (own connection in real life; the row is committed already).
            run_once(Handler(), scope=SCOPE, key="evt_1", store=store)
        with pytest.raises(IdempotencyKeyInUse) as patient:
            run_once(Handler(), scope=SCOPE, key="evt_1", store=store, retry_after=timedelta(0, 90))
        outer.result = "done"
    assert excinfo.value.retry_after == 1  # the RETRY_AFTER hint
    assert patient.value.retry_after == 15  # a longer hint, bounded by the lease left
    assert "deliver it again" in str(excinfo.value.detail)
    assert "header" not in str(excinfo.value.detail).lower()
    assert run_once(Handler(), scope=SCOPE, key="evt_1", store=store) == "done"


def test_a_worker_whose_lease_was_taken_over_stores_nothing(clock):
    store = RecordStore(clock=clock)
    with (
        pytest.raises(IdempotencyLeaseLost),
        idempotent_operation(
            scope=SCOPE, key="evt_1", store=store, lease=timedelta(seconds=10)
        ) as slow,
    ):
        Widget.objects.create(name="slow")
        clock.advance(seconds=11)
        # Redelivered meanwhile: the lease has run out, so this worker takes the key over.
        taken = RecordStore(clock=clock).reserve(
            scope=SCOPE,
            key="evt_1",
            fingerprint=IdempotencyRecord.objects.get().fingerprint,
            method="EVENT",
            path=SCOPE,
            lease=timedelta(seconds=10),
            expiry=timedelta(hours=1),
        )
        slow.result = "slow"
    assert taken.taken_over
    assert not Widget.objects.filter(name="slow").exists()
    assert IdempotencyRecord.objects.get().state == "in_progress"


def test_an_expired_key_runs_again(clock):
    store = RecordStore(clock=clock)
    handler = Handler()
    run_once(handler, scope=SCOPE, key="evt_1", store=store, expiry=timedelta(hours=1))
    clock.advance(hours=1)
    run_once(handler, scope=SCOPE, key="evt_1", store=store)
    assert handler.calls == 2


def test_the_context_manager_says_whether_to_run():
    with idempotent_operation(scope=SCOPE, key="evt_1", operation="charge.succeeded") as run:
        assert (run.should_run, run.replayed) == (True, False)
        run.result = {"ok": True}
    with idempotent_operation(scope=SCOPE, key="evt_1") as again:
        assert (again.should_run, again.replayed) == (False, True)
        assert again.result == {"ok": True}
    assert IdempotencyRecord.objects.get().path == "charge.succeeded"


@pytest.mark.parametrize("key", ["", "k" * 256, "has space", "a,b"])
def test_an_invalid_key_is_refused_before_anything_is_stored(key):
    with pytest.raises(IdempotencyKeyInvalid):
        run_once(Handler(), scope=SCOPE, key=key)
    assert not IdempotencyRecord.objects.exists()


def test_works_inside_the_callers_transaction():
    handler = Handler()
    with transaction.atomic():
        run_once(handler, scope=SCOPE, key="evt_1")
        run_once(handler, scope=SCOPE, key="evt_1")
    assert handler.calls == 1
    assert IdempotencyRecord.objects.get().state == "completed"


def test_signals_name_the_guard_as_sender():
    with captured(*signals.OUTCOMES) as seen:
        run_once(Handler(), scope=SCOPE, key="evt_1")
        run_once(Handler(), scope=SCOPE, key="evt_1")
        with pytest.raises(RuntimeError):
            run_once(Handler(fail=True), scope=SCOPE, key="evt_2")
    assert outcomes(seen) == ["reserved", "completed", "replayed", "reserved", "released"]
    assert {sender for _, sender, _ in seen} == {idempotent_operation}
    assert all(kwargs["request"] is None for _, _, kwargs in seen)
    assert seen[0][2]["scope"] == SCOPE


@pytest.mark.row_locks
def test_one_event_delivered_by_many_workers_at_once_runs_once():
    handler = Handler(sleep=0.5)

    def deliver(i):
        try:
            return run_once(handler, scope=SCOPE, key="evt_race", fingerprint={"n": 1})
        except IdempotencyKeyInUse as error:
            return error

    results = race(16, deliver)

    assert handler.calls == 1
    assert Widget.objects.count() == 1
    done = [r for r in results if not isinstance(r, IdempotencyKeyInUse)]
    busy = [r for r in results if isinstance(r, IdempotencyKeyInUse)]
    assert len(done) + len(busy) == 16
    assert len(done) >= 1
    assert all(r == done[0] for r in done)
    assert all(error.retry_after >= 1 for error in busy)
    assert IdempotencyRecord.objects.get().state == "completed"


@pytest.mark.row_locks
def test_redelivering_until_done_gives_every_worker_the_one_result():
    handler = Handler(sleep=0.3)

    def deliver_until_done(i):
        while True:
            try:
                return run_once(handler, scope=SCOPE, key="evt_retry")
            except IdempotencyKeyInUse:
                time.sleep(0.05)

    results = race(12, deliver_until_done)

    assert handler.calls == 1
    assert len({repr(result) for result in results}) == 1
    assert results[0]["widget"] == Widget.objects.get().pk


@pytest.mark.row_locks
def test_a_failed_worker_frees_the_event_for_the_next_delivery_under_race():
    failing = Handler(sleep=0.2, fail=True)
    healthy = Handler()

    def deliver(i):
        handler = failing if i == 0 else healthy
        if i:
            time.sleep(0.05)  # let the failing worker reserve first
        while True:
            try:
                return run_once(handler, scope=SCOPE, key="evt_fail")
            except IdempotencyKeyInUse:
                time.sleep(0.05)
            except RuntimeError as error:
                return error

    results = race(6, deliver)

    assert isinstance(results[0], RuntimeError)
    assert healthy.calls == 1
    assert Widget.objects.count() == 1
    assert len({repr(result) for result in results[1:]}) == 1
