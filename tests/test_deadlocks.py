"""No deadlocks between reserve, complete, release, takeover and purge, under real load.

On MariaDB, reserve's ``SELECT ... FOR UPDATE`` (through the (scope, key) index, then the row)
and a release's ``DELETE ... WHERE id = ...`` (the row, then the index) took their locks in
opposite orders: with clients retrying an operation whose failures release the key, InnoDB
reported deadlock 1213. Every path now reaches a record through the (scope, key) index first.

What InnoDB still reports are INSERTs of one new key against each other or against a decision on
it (the gap locks its duplicate check takes beside a released key's old index entry): the
store's own autocommitted statement or short transaction, rolled back whole and run again. The
test counts those too (printed); none may reach a caller.
"""

from __future__ import annotations

import os
import random
import threading
import time
import traceback
from collections import Counter
from datetime import timedelta

import pytest
from django.db import OperationalError, connection, connections

from idempotency.purge import Purger
from idempotency.store import (
    InProgress,
    LeaseLostError,
    RecordStore,
    Replay,
    Reserved,
    StoredResponse,
)

pytestmark = [pytest.mark.row_locks, pytest.mark.django_db(transaction=True)]

# 30 s by default, as the issue asked; shorter while iterating (DEADLOCK_TEST_SECONDS=5).
SECONDS = float(os.environ.get("DEADLOCK_TEST_SECONDS", "30"))
RETRIERS = 8
KEYS = [f"k{i}" for i in range(4)]  # few keys: every path meets every other on the same rows
OUTCOME = StoredResponse(201, [], b"{}")
DEADLOCK_CODES = {1213, "40P01"}  # InnoDB's ER_LOCK_DEADLOCK; PostgreSQL's deadlock_detected


def where(error):
    """The library's innermost function the error came through."""
    frames = traceback.extract_tb(error.__traceback__)
    names = [frame.name for frame in frames if "/idempotency/" in frame.filename]
    return names[-1] if names else "?"


def failure(error):
    return f"deadlock in {where(error)}" if is_deadlock(error) else f"error: {error}"


def is_deadlock(error):
    cause = error.__cause__
    code = getattr(cause, "sqlstate", None) or (cause.args[0] if cause and cause.args else None)
    return code in DEADLOCK_CODES or "deadlock" in str(error).lower()


def innodb_deadlocks():
    """InnoDB's own count (server-wide): the INSERTs and decisions it rolled back as deadlock
    victims, each run again by the store (they never reach a request)."""
    if connection.vendor != "mysql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'")
        return int(cursor.fetchone()[1])


def test_retriers_of_failing_operations_and_the_purge_never_deadlock():
    inside_innodb = innodb_deadlocks()
    store = RecordStore()
    deadline = time.monotonic() + SECONDS
    seen = Counter()
    lock = threading.Lock()
    start = threading.Barrier(RETRIERS + 1)

    def count(what):
        with lock:
            seen[what] += 1

    def retrier(seed):
        rng = random.Random(seed)
        start.wait()
        try:
            while time.monotonic() < deadline:
                try:
                    decision = store.reserve(
                        scope="s",
                        key=rng.choice(KEYS),
                        fingerprint="f",
                        method="POST",
                        path="/p",
                        # Short leases and expiries: takeovers, reuse of expired keys and
                        # purges of them all happen many times a second.
                        lease=timedelta(milliseconds=rng.choice([20, 200])),
                        expiry=timedelta(milliseconds=300),
                    )
                    if isinstance(decision, Reserved):
                        count("taken over" if decision.taken_over else "reserved")
                        # Now and then a holder hangs past a short lease (30 ms against 20):
                        # another retrier takes its key over, however fast the machine is.
                        time.sleep(0.03 if rng.random() < 0.1 else rng.random() / 100)
                        if rng.random() < 0.7:  # the operation failed: the key is released
                            store.release(decision)
                            count("released")
                        else:
                            try:
                                with store.atomic():
                                    store.complete(decision, OUTCOME)
                                count("completed")
                            except LeaseLostError:
                                count("lease lost")
                    elif isinstance(decision, InProgress | Replay):
                        count(type(decision).__name__)
                except OperationalError as error:
                    count(failure(error))
        finally:
            connections.close_all()

    def purger():
        start.wait()
        try:
            while time.monotonic() < deadline:
                try:
                    if Purger(batch_size=2).run().deleted:
                        count("purged")
                except OperationalError as error:
                    count(failure(error))
                time.sleep(0.005)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=retrier, args=(seed,)) for seed in range(RETRIERS)]
    threads.append(threading.Thread(target=purger))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SECONDS + 60)

    inside_innodb = innodb_deadlocks() - inside_innodb
    print(f"\n{SECONDS:g} s, {RETRIERS} retriers and a purger: {dict(seen)}")
    print(f"InnoDB deadlock victims the store ran again (never a request's): {inside_innodb}")
    assert not [what for what in seen if what.startswith("deadlock")], dict(seen)
    assert not [what for what in seen if what.startswith("error")], dict(seen)
    # The load was real: every path ran many times.
    for path in ("reserved", "released", "completed", "taken over", "purged"):
        assert seen[path] > 0, (path, dict(seen))
