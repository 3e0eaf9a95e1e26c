"""The opt-in bounded wait under gunicorn: a burst of duplicates of a 1-second payment.

With the wait on, every duplicate is answered with the one outcome (replayed), none with 409;
with it off, duplicates that meet the payment in progress get 409 as before. The waiters' cost
to the database is counted from PostgreSQL's own statistics.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from idempotency.waiting import max_polls
from tests.faults.server import DemoServer
from tests.faults.test_processes import BODY, assert_in_progress, counts, race

# PostgreSQL: the reads are counted in pg_stat_user_tables.
pytestmark = [pytest.mark.postgres, pytest.mark.processes]

WAIT_SECONDS = 5.0
WORKERS, THREADS = 4, 8


@pytest.fixture(scope="module")
def waiting_server(demo_database):
    server = DemoServer(
        demo_database,
        workers=WORKERS,
        threads=THREADS,
        lease=10,
        environment={"IDEMPOTENCY_WAIT_SECONDS": str(WAIT_SECONDS)},
    )
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def threaded_server(demo_database):
    server = DemoServer(demo_database, workers=WORKERS, threads=THREADS, lease=10)
    try:
        yield server.start()
    finally:
        server.stop()


def record_reads(db):
    """Index scans and rows read on the records table so far (PostgreSQL's statistics)."""
    db.query("SELECT pg_stat_clear_snapshot()")
    return db.value(
        "SELECT idx_scan FROM pg_stat_user_tables WHERE relname = 'idempotency_idempotencyrecord'"
    )


def burst(server, key):
    token = server.database.tokens["u1"]
    return race(
        100,
        lambda i: server.request(
            "POST", "/payments", BODY, token=token, key=key, fault="slow", timeout=60
        ),
    )


def test_100_duplicates_of_a_1s_payment_with_the_wait_on_all_get_the_one_outcome(
    waiting_server, clean
):
    before = record_reads(clean)
    started = time.monotonic()
    answers = burst(waiting_server, "burst-wait")
    elapsed = time.monotonic() - started
    time.sleep(0.6)  # PostgreSQL publishes table statistics about every 500 ms
    reads = record_reads(clean) - before

    statuses = Counter(answer.status for answer in answers)
    replayed = sum(answer.replayed for answer in answers)
    print(
        f"\nwait on: {dict(statuses)}, {replayed} replayed, in {elapsed:.2f} s; "
        f"{reads} index reads of the records table"
    )
    assert statuses == {201: 100}
    assert replayed == 99
    assert len({answer.body for answer in answers}) == 1
    assert counts(clean) == (1, 1)
    # Each request: its reservation INSERT, the read that finds the key in progress, the locked
    # read that decides, and at most one poll per backoff step of the wait (the holder: its
    # completion). A waiter holds no transaction meanwhile.
    per_request = 3 + max_polls(WAIT_SECONDS) + 1
    assert reads <= 100 * per_request, reads


def test_with_the_wait_off_duplicates_meeting_it_in_progress_get_409(threaded_server, clean):
    answers = burst(threaded_server, "burst-nowait")

    statuses = Counter(answer.status for answer in answers)
    print(f"\nwait off: {dict(statuses)}")
    assert set(statuses) <= {201, 409}
    assert statuses[409] >= 1
    for answer in answers:
        if answer.status == 409:
            assert_in_progress(answer)
            assert answer.headers["Retry-After"] == "1"  # the hint, not the 10 s lease
    assert counts(clean) == (1, 1)
