"""The guarantees where production breaks them: many worker processes, killed workers, impatient
clients. The demo runs under gunicorn (sync workers, DEBUG off) on a PostgreSQL database of its
own; the tests talk HTTP to it and read its database directly.
"""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.faults.conftest import LEASE_SECONDS, SHORT_LEASE_SECONDS

pytestmark = [pytest.mark.row_locks, pytest.mark.processes]

BODY = {"customerId": "cust_123", "amount": 100, "currency": "USD"}
# What a client sees when the worker serving it dies: the connection closes without an answer.
DROPPED = (OSError, http.client.HTTPException)


def race(count, send, threads=None):
    """Run ``send(i)`` for ``i`` in ``range(count)`` from ``threads`` threads, started together."""
    threads = threads or count
    barrier = threading.Barrier(threads)

    def start(i):
        if i < threads:
            barrier.wait(30)
        return send(i)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(start, range(count)))


def counts(db):
    return (
        db.value("SELECT count(*) FROM gateway_charge"),
        db.value("SELECT count(*) FROM payments_payment"),
    )


def record(db, key):
    rows = db.query(
        "SELECT state, response_status, response_body, locked_until "
        "FROM idempotency_idempotencyrecord WHERE {key} = %s",
        [key],
    )
    return rows[0] if rows else None


def backends_in_transaction(db):
    rows = db.query(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND state = 'idle in transaction'",
        [db.name],
    )
    return [pid for (pid,) in rows]


def wait_until(condition, timeout=10.0, step=0.02):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(step)


def pay(server, key, user="u1", **options):
    return server.request(
        "POST", "/payments", BODY, token=server.database.tokens[user], key=key, **options
    )


def assert_in_progress(answer):
    assert answer.status == 409, answer.body
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.json()["type"].endswith(":request-in-progress")
    assert int(answer.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("fault", [None, "slow"])
def test_one_key_from_100_concurrent_clients_charges_once(demo_server, clean, fault):
    """With ``slow`` the holder keeps the key for a second: most clients meet it in progress."""
    assert len(demo_server.worker_pids()) == 4
    started = time.monotonic()
    answers = race(100, lambda i: pay(demo_server, "many-1", fault=fault))
    elapsed = time.monotonic() - started

    statuses = Counter(answer.status for answer in answers)
    print(f"\n100 clients, one key, fault {fault}: {dict(statuses)} in {elapsed:.2f} s")
    assert set(statuses) <= {201, 409}, statuses
    originals = [a for a in answers if a.status == 201 and not a.replayed]
    assert len(originals) == 1
    assert all(a.body == originals[0].body for a in answers if a.status == 201)
    for answer in answers:
        if answer.status == 409:
            assert_in_progress(answer)
    assert counts(clean) == (1, 1)
    payment_id = clean.value("SELECT payment_id FROM payments_payment")
    assert originals[0].json()["paymentId"] == payment_id
    assert record(clean, "many-1")[:2] == ("completed", 201)


def test_500_keys_each_sent_twice_at_once_charge_500_times(demo_server, clean):
    keys = [f"pair-{i // 2}" for i in range(1000)]
    pairs = {key: threading.Barrier(2) for key in set(keys)}

    def send(i):
        pairs[keys[i]].wait(30)  # both requests of a key leave together
        return keys[i], pay(demo_server, keys[i])

    started = time.monotonic()
    answers = race(1000, send, threads=100)
    elapsed = time.monotonic() - started

    statuses = Counter(answer.status for _, answer in answers)
    print(f"\n500 keys x 2 at once: {dict(statuses)} in {elapsed:.2f} s")
    assert set(statuses) <= {201, 409}, statuses
    originals = Counter(key for key, a in answers if a.status == 201 and not a.replayed)
    assert originals == Counter(set(keys))  # one operation per key, never two
    assert counts(clean) == (500, 500)
    assert (
        clean.value("SELECT count(*) FROM idempotency_idempotencyrecord WHERE state = 'completed'")
        == 500
    )


def test_a_worker_killed_while_it_holds_a_key(demo_server, clean):
    """kill -9 mid-operation: 409 while its lease lives, then a retry takes over, charged once."""
    key = "killed-1"
    dropped = {}

    def first_attempt():
        try:
            dropped["answer"] = pay(demo_server, key, fault="slow")
        except DROPPED as error:
            dropped["error"] = error

    thread = threading.Thread(target=first_attempt)
    thread.start()
    wait_until(lambda: (record(clean, key) or ("",))[0] == "in_progress")
    reserved_at = time.monotonic()
    worker = demo_server.worker_pid_for(key)
    assert worker in demo_server.worker_pids()
    os.kill(worker, signal.SIGKILL)  # while the slow gateway call runs
    thread.join(10)
    assert "error" in dropped, dropped  # the client got no answer

    first_retry = pay(demo_server, key)
    assert_in_progress(first_retry)
    assert counts(clean) == (0, 0)

    retries = 1
    while (answer := pay(demo_server, key)).status == 409:
        assert_in_progress(answer)
        retries += 1
        time.sleep(0.2)
    taken_over_after = time.monotonic() - reserved_at

    print(f"\nkilled worker: {retries} retries answered 409; taken over after "
          f"{taken_over_after:.2f} s (lease {LEASE_SECONDS} s)")  # fmt: skip
    assert answer.status == 201 and not answer.replayed
    assert taken_over_after >= LEASE_SECONDS - 0.3
    assert counts(clean) == (1, 1)
    assert (
        clean.value(
            "SELECT count(*) FROM idempotency_idempotencyrecord WHERE state = 'in_progress'"
        )
        == 0
    )
    assert pay(demo_server, key).body == answer.body
    # Gunicorn replaced the dead worker.
    wait_until(lambda: len(demo_server.worker_pids()) == 4)


def test_a_slow_worker_taken_over_stores_nothing_and_leaves_no_payment(short_lease_server, clean):
    """Fencing: the first attempt outlives its 0.5 s lease; a retry takes the key over.

    The first attempt charges the gateway and writes its payment, then finds its lease token
    replaced: its transaction (payment included) rolls back and it answers 409 lease-lost.
    The retry gets the gateway's existing charge (same gateway key) and completes.
    """
    key = "fenced-1"
    first = {}
    thread = threading.Thread(
        target=lambda: first.update(answer=pay(short_lease_server, key, fault="slow"))
    )
    thread.start()
    wait_until(lambda: (record(clean, key) or ("",))[0] == "in_progress")
    time.sleep(SHORT_LEASE_SECONDS + 0.1)  # the lease ran out; the first still sleeps

    retry = pay(short_lease_server, key, fault="slow")  # takes over; slow, so it ends last
    thread.join(10)

    fenced = first["answer"]
    assert fenced.status == 409, fenced.body
    assert fenced.json()["type"].endswith(":lease-lost")
    assert fenced.headers["Retry-After"] == "1"
    assert retry.status == 201 and not retry.replayed
    assert counts(clean) == (1, 1)
    payment_id, charge_id = clean.query("SELECT payment_id, charge_id FROM payments_payment")[0]
    assert retry.json()["paymentId"] == payment_id
    assert clean.value("SELECT charge_id FROM gateway_charge") == charge_id
    state, status, body, _ = record(clean, key)
    assert (state, status, bytes(body)) == ("completed", 201, retry.body)


def test_a_fenced_attempt_that_ends_after_the_new_holder_completed_leaves_nothing(
    short_lease_server, clean
):
    """The other order: the retry completes first; the old holder must still leave nothing."""
    key = "fenced-2"
    first = {}
    thread = threading.Thread(
        target=lambda: first.update(answer=pay(short_lease_server, key, fault="slow"))
    )
    thread.start()
    wait_until(lambda: (record(clean, key) or ("",))[0] == "in_progress")
    time.sleep(SHORT_LEASE_SECONDS + 0.1)

    retry = pay(short_lease_server, key)  # takes over and completes at once
    assert retry.status == 201 and not retry.replayed
    thread.join(10)

    # It charged (the gateway handed back the retry's charge) and found the retry's payment,
    # then its completion found another lease token: all of it rolled back.
    late = first["answer"]
    assert late.status == 409, late.body
    assert late.json()["type"].endswith(":lease-lost")
    assert counts(clean) == (1, 1)
    assert clean.value("SELECT payment_id FROM payments_payment") == retry.json()["paymentId"]
    assert bytes(record(clean, key)[2]) == retry.body
    assert pay(short_lease_server, key).body == retry.body


def test_a_client_that_gives_up_first_retries_until_it_gets_the_outcome(demo_server, clean):
    """The client's timeout (0.3 s) fires while the slow charge (about 1 s) runs."""
    key = "impatient-1"
    with pytest.raises(TimeoutError):
        pay(demo_server, key, fault="slow", timeout=0.3)

    answers = []
    while True:
        # A real client resends the same request, headers and all.
        answer = pay(demo_server, key, fault="slow", timeout=5)
        answers.append(answer)
        if answer.status != 409:
            break
        assert_in_progress(answer)
        time.sleep(0.2)

    print(f"\nimpatient client: {[a.status for a in answers]}")
    outcome = answers[-1]
    assert outcome.status == 201
    assert outcome.replayed  # produced by the first attempt, not by a retry
    assert len(answers) >= 2  # the first retries came while the first attempt still ran
    assert counts(clean) == (1, 1)
    payment = clean.query("SELECT payment_id, amount, currency, charge_id FROM payments_payment")[0]
    body = outcome.json()
    assert (body["paymentId"], body["amount"], body["currency"]) == payment[:3]
    assert clean.value("SELECT charge_id FROM gateway_charge") == payment[3]
    assert bytes(record(clean, key)[2]) == outcome.body


@pytest.mark.postgres  # finds and kills the worker's backend through pg_stat_activity
def test_the_database_connection_lost_mid_operation_answers_503_and_the_retry_pays_once(
    demo_server, clean
):
    """The worker's connection is terminated while the slow charge runs (its transaction open).

    The gateway, on a connection of its own, still charges; the payment cannot be written, so
    the client gets 503 and nothing of the payment is stored. The retry (on any worker; the one
    that lost its connection reconnects at its next request) gets the gateway's existing charge
    back through the gateway key, and pays once.
    """
    key = "db-lost-1"
    first = {}
    thread = threading.Thread(
        target=lambda: first.update(answer=pay(demo_server, key, fault="slow"))
    )
    thread.start()
    wait_until(lambda: (record(clean, key) or ("",))[0] == "in_progress")
    wait_until(lambda: backends_in_transaction(clean))
    (worker_backend,) = backends_in_transaction(clean)  # the one worker inside the operation
    clean.query("SELECT pg_terminate_backend(%s)", [worker_backend])
    thread.join(10)

    lost = first["answer"]
    assert lost.status == 503, lost.body
    assert lost.json()["type"].endswith(":storage-unavailable")
    assert lost.headers["Retry-After"] == "1"
    assert counts(clean) == (1, 0)  # charged at the gateway, no payment
    assert record(clean, key) is None  # the key was released for the retry

    retry = pay(demo_server, key)

    assert retry.status == 201 and not retry.replayed
    assert counts(clean) == (1, 1)
    payment_charge = clean.value("SELECT charge_id FROM payments_payment")
    assert clean.value("SELECT charge_id FROM gateway_charge") == payment_charge
