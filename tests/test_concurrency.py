"""Real races: threads, one database connection each, released together.

They run on PostgreSQL (row locks) and on a SQLite file (IMMEDIATE transactions serialize
writers; a duplicate waits for the lock instead of answering 409 at once).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections
from rest_framework.test import APIClient

from idempotency.models import IdempotencyRecord
from tests.testapp.models import Widget
from tests.testapp.views import Operation

pytestmark = pytest.mark.django_db(transaction=True)


def race(count, send):
    """Run ``send(i)`` in ``count`` threads that start at the same moment."""
    barrier = threading.Barrier(count)

    def worker(i):
        try:
            barrier.wait()
            return send(i)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(worker, range(count)))


def post(url, body, key):
    return APIClient().post(url, body, format="json", headers={"Idempotency-Key": key})


def test_one_key_sent_by_many_threads_runs_once():
    body = {"name": "race", "sleep": 0.5}
    responses = race(24, lambda i: post("/test/widgets", body, "one-key"))

    statuses = sorted(r.status_code for r in responses)
    assert Operation.calls == 1
    assert Widget.objects.count() == 1
    assert all(s in (201, 409) for s in statuses), statuses
    created = [r for r in responses if r.status_code == 201]
    originals = [r for r in created if "Idempotent-Replayed" not in r]
    assert len(originals) == 1
    assert all(r.content == originals[0].content for r in created)
    assert all(int(r["Retry-After"]) >= 1 for r in responses if r.status_code == 409)
    assert IdempotencyRecord.objects.get().state == "completed"


def test_after_the_race_every_retry_gets_the_one_outcome():
    body = {"name": "race", "sleep": 0.2}
    race(20, lambda i: post("/test/widgets", body, "k"))
    replays = race(20, lambda i: post("/test/widgets", body, "k"))
    assert {r.status_code for r in replays} == {201}
    assert all(r["Idempotent-Replayed"] == "true" for r in replays)
    assert Operation.calls == 1


def test_distinct_keys_sent_twice_at_once_run_once_each():
    keys = [f"key-{i // 2}" for i in range(40)]
    responses = race(40, lambda i: post("/test/widgets", {"name": keys[i]}, keys[i]))
    assert all(r.status_code in (201, 409) for r in responses)
    assert Operation.calls == 20
    assert Widget.objects.count() == 20
    assert IdempotencyRecord.objects.filter(state="completed").count() == 20


def test_retries_racing_for_a_dead_holders_key_take_it_over_once(clocked_store, clock):
    """A holder died: its lease ran out. Many retries arrive at once; one takes over."""
    from tests.test_mixin_contract import hold_key

    hold_key(APIClient(), clocked_store, lease_seconds=60)
    Operation.calls = 0
    clock.advance(seconds=61)

    responses = race(20, lambda i: post("/test/widgets", {"name": "a"}, "pay_8f7a9c2"))

    assert Operation.calls == 1
    assert sorted({r.status_code for r in responses}) in ([201], [201, 409])
    assert IdempotencyRecord.objects.get().state == "completed"


@pytest.mark.row_locks  # SQLite's one writer at a time makes a takeover mid-operation impossible
def test_slow_holder_fenced_out_by_a_takeover_leaves_nothing_behind():
    """The first attempt outlives its 300 ms lease; a retry takes over and completes.

    The first attempt's completion finds a new token: its transaction (widget included) rolls
    back and it answers 409 lease-lost. Both ran (an external call would have happened twice,
    which is why the demo's gateway has keys of its own), but only one outcome exists.
    """
    url = "/test/short-lease-widgets/"
    body = {"name": "slow", "sleep": 2.0}
    results = {}

    def first():
        results["first"] = post(url, body, "fence")
        connections.close_all()

    thread = threading.Thread(target=first)
    thread.start()
    # Past the 300 ms lease, while the first attempt still sleeps (timed from its reservation,
    # so a loaded machine that starts the thread late cannot reorder the two attempts).
    deadline = time.monotonic() + 10
    while not IdempotencyRecord.objects.filter(key="fence").exists():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.5)
    results["second"] = post(url, body, "fence")
    thread.join()

    assert results["second"].status_code == 201
    assert results["first"].status_code == 409
    assert results["first"].json()["type"].endswith("lease-lost")
    assert Operation.calls == 2
    widget = Widget.objects.get()
    assert results["second"].json()["id"] == widget.pk
    record = IdempotencyRecord.objects.get()
    assert record.state == "completed"
    assert post(url, body, "fence").json()["id"] == widget.pk


@pytest.mark.row_locks
def test_fenced_out_holder_that_crashes_answers_lease_lost_not_500():
    """The first attempt loses its lease, then raises: the key's outcome is the takeover's."""
    url = "/test/crash-if-first/"
    results = {}

    def first():
        client = APIClient()
        client.raise_request_exception = False
        results["first"] = client.post(
            url, {"name": "w"}, format="json", headers={"Idempotency-Key": "crash"}
        )
        connections.close_all()

    thread = threading.Thread(target=first)
    thread.start()
    deadline = time.monotonic() + 10
    while not IdempotencyRecord.objects.filter(key="crash").exists():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.4)  # past the 300 ms lease, while the first attempt sleeps its second
    results["second"] = post(url, {"name": "w"}, "crash")
    thread.join()

    assert results["second"].status_code == 201
    assert results["first"].status_code == 409
    assert results["first"].json()["type"].endswith("lease-lost")
    widget = Widget.objects.get()  # the crashed attempt's widget rolled back
    assert IdempotencyRecord.objects.get().state == "completed"
    assert post(url, {"name": "w"}, "crash").json() == {"id": widget.pk}
