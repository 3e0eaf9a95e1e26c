"""Paths of the plain read and the one-statement purge checked in review and found sound."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.db.models.signals import post_delete
from django.test.utils import CaptureQueriesContext

from idempotency.models import IdempotencyRecord
from idempotency.purge import Purger
from idempotency.store import InProgress, LeaseLostError, RecordStore, Reserved, StoredResponse
from tests.conftest import FakeClock
from tests.test_purge import keys_left, make

pytestmark = pytest.mark.django_db(transaction=True)

LEASE = timedelta(seconds=30)
EXPIRY = timedelta(hours=1)


def test_purge_beside_takeovers_never_deletes_a_taken_over_key(clock: FakeClock) -> None:
    """Threads take over expired keys whose holders died while the purge deletes them in
    batches of 3: every takeover the store granted completes (its row was not purged under
    it), and every key nobody took over is gone when the purge is done."""
    count, takers = 120, 4
    make(count, "dead", now=clock.now, expires_in=-timedelta(minutes=1), in_progress=True,
         locked_until=clock.now - timedelta(seconds=1))  # fmt: skip
    granted: list[str] = []
    lost: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def taker(t: int) -> None:
        store = RecordStore(clock=clock)
        try:
            for i in range(t, count, takers * 2):  # half the keys
                key = f"dead-{i}"
                decision = store.reserve(scope="anonymous", key=key, fingerprint="0" * 64,
                                         method="POST", path="/test/widgets", lease=LEASE,
                                         expiry=EXPIRY)  # fmt: skip
                if not isinstance(decision, Reserved):
                    continue
                try:
                    store.complete(decision, StoredResponse(201, [], b"x"))
                except LeaseLostError:
                    with lock:
                        lost.append(key)
                else:
                    with lock:
                        granted.append(key)
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    def purger() -> None:
        try:
            Purger(batch_size=3, clock=clock).run()
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=taker, args=(t,)) for t in range(takers)]
    threads.append(threading.Thread(target=purger))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert not errors
    assert lost == []
    # Taken over or purged and reserved anew: either way completed and kept.
    assert set(granted) <= keys_left()
    Purger(clock=clock).run()  # whatever the first run left behind a locked row
    assert keys_left() == set(granted)


def test_purge_with_a_delete_receiver_keeps_its_bounds(clock: FakeClock) -> None:
    """A ``post_delete`` receiver (an audit log) makes Django collect the instances instead of
    a fast delete: the batch stays bounded, live leases stay, and the receiver sees each."""
    make(7, "expired", now=clock.now, expires_in=-timedelta(seconds=1))
    make(1, "held", now=clock.now, expires_in=-timedelta(hours=1), in_progress=True,
         locked_until=clock.now + timedelta(seconds=30))  # fmt: skip
    seen: list[str] = []

    def audit(sender: Any, instance: IdempotencyRecord, **kwargs: Any) -> None:
        seen.append(instance.key)

    post_delete.connect(audit, sender=IdempotencyRecord)
    sizes: list[int] = []
    try:
        result = Purger(batch_size=3, clock=clock).run(on_batch=sizes.append)
    finally:
        post_delete.disconnect(audit, sender=IdempotencyRecord)

    assert sizes == [3, 3, 1]
    assert (result.deleted, result.batches) == (7, 3)
    assert sorted(seen) == sorted(f"expired-{i}" for i in range(7))
    assert keys_left() == {"held-0"}


def test_a_batch_larger_than_sqlites_variable_limit(clock: FakeClock) -> None:
    """PostgreSQL, SQLite: the ids are a subquery, not parameters: a batch of the largest size
    the command accepts runs in one statement whatever the database's limit on variables."""
    IdempotencyRecord.objects.bulk_create(
        [
            IdempotencyRecord(
                scope="s",
                key=f"k{i}",
                fingerprint="0" * 64,
                method="POST",
                path="/",
                state="completed",
                response_headers=[],
                response_body=b"",
                created_at=clock.now - timedelta(hours=2),
                expires_at=clock.now - timedelta(seconds=1 + i % 60),
            )  # fmt: skip
            for i in range(2500)
        ],
        batch_size=200,
    )
    with CaptureQueriesContext(connection) as context:
        result = Purger(batch_size=100_000, clock=clock).run()
    assert (result.deleted, result.batches) == (2500, 1)
    if connection.vendor != "mysql":  # InnoDB's lock of the picked keys lists them
        assert all(len(query["sql"]) < 5000 for query in context.captured_queries)


def test_the_plain_read_after_a_reconnect_and_a_poll(clock: FakeClock) -> None:
    """The converters cached on the connection object still decode after it reconnects, and a
    waiter's poll reads the same fields (no field the read leaves empty is used)."""
    store = RecordStore()
    holder = store.reserve(scope="s", key="r", fingerprint="f", method="POST", path="/p",
                           lease=LEASE, expiry=EXPIRY)  # fmt: skip
    assert isinstance(holder, Reserved)
    connection.close()
    again = store.reserve(scope="s", key="r", fingerprint="f", method="POST", path="/p",
                          lease=LEASE, expiry=EXPIRY)  # fmt: skip
    assert isinstance(again, InProgress)
    assert isinstance(store.poll(scope="s", key="r", fingerprint="f"), InProgress)
    store.complete(holder, StoredResponse(200, [("X", "ü")], b"\x00b"))
    connection.close()
    replay = store.poll(scope="s", key="r", fingerprint="f")
    assert replay is not None and replay == store.reserve(
        scope="s", key="r", fingerprint="f", method="POST", path="/p", lease=LEASE, expiry=EXPIRY
    )
