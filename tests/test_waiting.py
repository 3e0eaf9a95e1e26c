"""The opt-in bounded wait (``WAIT``): a duplicate waits for the holder instead of a 409.

Real threads against PostgreSQL: the holder's request runs in one thread while the duplicate
waits in another. (On SQLite the holder's transaction holds the file's write lock, so the
duplicate's reservation itself waits for it: there is nothing in progress to wait for.)
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from idempotency import waiting
from idempotency.models import IdempotencyRecord
from tests.testapp.views import Operation

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls("tests.surface_urls"),
]
KEY = "wait-1"


def post(body, **settings):
    with override_settings(IDEMPOTENCY=settings):
        client = APIClient(raise_request_exception=False)
        return client.post("/slow", body, format="json", headers={"Idempotency-Key": KEY})


def start_holder(body):
    """Send ``body`` from another thread; return (thread, answers) once it holds the key."""
    answers = []

    def run():
        answers.append(post(body))
        connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 10
    while not IdempotencyRecord.objects.filter(key=KEY).exists():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return thread, answers


@pytest.mark.row_locks
def test_a_duplicate_waits_for_the_holder_and_answers_its_outcome():
    thread, answers = start_holder({"sleep": 1.0})

    waited = post({"sleep": 1.0}, WAIT=timedelta(seconds=5))
    thread.join()

    assert answers[0].status_code == 201
    assert waited.status_code == 201
    assert waited["Idempotent-Replayed"] == "true"
    assert waited.content == answers[0].content
    assert Operation.calls == 1


@pytest.mark.row_locks
def test_a_waiter_whose_holder_fails_reserves_the_key_and_runs_it():
    body = {"sleep": 0.5, "fail-first": True}
    thread, answers = start_holder(body)

    waited = post(body, WAIT=timedelta(seconds=5))
    thread.join()

    assert answers[0].status_code == 500
    assert waited.status_code == 201
    assert "Idempotent-Replayed" not in waited
    assert waited.json()["call"] == 2
    assert IdempotencyRecord.objects.get().state == "completed"


@pytest.mark.row_locks
def test_a_wait_that_runs_out_answers_409_and_polls_a_bounded_number_of_times():
    thread, _ = start_holder({"sleep": 1.5})

    started = time.monotonic()
    with CaptureQueriesContext(connection) as queries:
        response = post({"sleep": 1.5}, WAIT=timedelta(seconds=0.6))
    elapsed = time.monotonic() - started
    thread.join()

    assert response.status_code == 409
    assert response["Retry-After"] == "1"
    assert json.loads(response.content)["type"].endswith(":request-in-progress")
    assert 0.6 <= elapsed < 1.4
    polls = [q for q in queries.captured_queries if "idempotency" in q["sql"]]
    # Reservation INSERT, its reads (plain and locked), then one read per backoff step.
    assert len(polls) <= 3 + waiting.max_polls(0.6), len(polls)
    assert not any("FOR UPDATE" in q["sql"] for q in polls[3:])  # waiting takes no lock


@pytest.mark.row_locks
def test_duplicates_past_the_waiter_cap_get_409_at_once():
    thread, _ = start_holder({"sleep": 1.0})

    started = time.monotonic()
    response = post({"sleep": 1.0}, WAIT=timedelta(seconds=5), MAX_WAITERS=0)
    elapsed = time.monotonic() - started
    thread.join()

    assert response.status_code == 409
    assert elapsed < 0.5


@pytest.mark.row_locks
def test_with_the_wait_off_a_duplicate_gets_409_at_once():
    thread, _ = start_holder({"sleep": 1.0})

    started = time.monotonic()
    response = post({"sleep": 1.0})  # WAIT defaults to 0
    elapsed = time.monotonic() - started
    thread.join()

    assert response.status_code == 409
    assert elapsed < 0.5


def test_a_wait_reads_a_bounded_number_of_times():
    # Sleeps of 25-50, 50-100, 100-200, 200-400 ms, then 250-500 ms each.
    assert [waiting.max_polls(budget) for budget in (0.0, 0.6, 3.0)] == [0, 5, 15]
