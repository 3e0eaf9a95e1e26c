"""The database goes away mid-request: 503, nothing half stored, the retry runs once.

On PostgreSQL the request's own backend is terminated (``pg_terminate_backend``) from another
connection at the worst moments: while the operation holds its transaction open, and between
two requests. The retry goes through the same thread, so the same Django connection object:
it proves that the connection is re-established.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.db import OperationalError, connection, connections
from django.urls import include, path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

from idempotency.mixins import IdempotentMixin
from idempotency.models import IdempotencyRecord
from idempotency.store import RecordStore, Reserved, StoredResponse
from tests.testapp.models import Widget
from tests.testapp.views import Operation

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]


class QueryAfterPauseView(IdempotentMixin, APIView):
    """Writes, pauses with its transaction open, then queries again (or fails as SQLite can)."""

    permission_classes = [AllowAny]

    def post(self, request):
        Operation.run()
        widget = Widget.objects.create(name=request.data["name"])
        time.sleep(float(request.data.get("sleep", 0)))
        if request.data.get("fail"):
            raise OperationalError("database is locked")
        return Response({"id": widget.pk, "widgets": Widget.objects.count()}, status=201)


urlpatterns = [
    path("query-after-pause/", QueryAfterPauseView.as_view()),
    path("", include("tests.urls")),
]


def post(api, url, body, key="k"):
    return api.post(url, body, format="json", headers={"Idempotency-Key": key})


def assert_storage_unavailable(response):
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    assert response["Retry-After"] == "1"
    problem = json.loads(response.content)
    assert problem["type"] == "urn:django-idempotency:problem:storage-unavailable"
    assert problem["status"] == 503


def terminate(pid, *, when_state=None, timeout=10.0):
    """Terminate backend ``pid`` from this thread's connection, once it is in ``when_state``."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while when_state is not None:
            cursor.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", [pid])
            row = cursor.fetchone()
            if row and row[0] == when_state:
                break
            assert time.monotonic() < deadline, f"backend {pid} never reached {when_state!r}"
            time.sleep(0.02)
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        assert cursor.fetchone()[0] is True


class Client(threading.Thread):
    """Sends requests from a thread of its own (one Django connection), in order."""

    def __init__(self, *requests):
        super().__init__()
        self.requests = requests
        self.responses = []
        self.pid = None
        self.ready = threading.Event()
        self.proceed = threading.Event()

    def run(self):
        api = APIClient()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.pid = cursor.fetchone()[0]
            self.ready.set()
            for url, body in self.requests:
                self.proceed.wait(10)
                self.responses.append(post(api, url, body))
        finally:
            self.ready.set()
            connections.close_all()


def run_with_termination(client, *, when_state):
    client.proceed.set()
    client.start()
    assert client.ready.wait(10)
    terminate(client.pid, when_state=when_state)
    client.join(30)
    assert not client.is_alive()
    return client.responses


@pytest.mark.postgres
def test_connection_lost_before_completion_answers_503_then_the_retry_runs_once():
    """The backend dies while the operation sleeps in its transaction; completion fails."""
    body = {"name": "a", "sleep": 0.5}
    client = Client(("/test/widgets", body), ("/test/widgets", body))

    first, retry = run_with_termination(client, when_state="idle in transaction")

    assert_storage_unavailable(first)
    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry
    assert Operation.calls == 2  # the first attempt ran, and rolled back with its connection
    widget = Widget.objects.get()
    assert retry.json()["id"] == widget.pk
    record = IdempotencyRecord.objects.get()
    assert (record.state, json.loads(bytes(record.response_body))) == ("completed", retry.json())
    replay = post(APIClient(), "/test/widgets", body)
    assert (replay.status_code, replay.content) == (201, retry.content)


@pytest.mark.postgres
def test_connection_lost_under_the_operation_answers_503_then_the_retry_runs_once():
    """The operation's own next query finds its connection gone."""
    body = {"name": "a", "sleep": 0.5}
    url = "/query-after-pause/"
    client = Client((url, body), (url, body))

    first, retry = run_with_termination(client, when_state="idle in transaction")

    assert_storage_unavailable(first)
    assert (retry.status_code, retry.json()["widgets"]) == (201, 1)
    assert Widget.objects.count() == 1
    assert IdempotencyRecord.objects.get().state == "completed"


@pytest.mark.postgres
def test_connection_lost_between_requests_answers_503_and_stores_nothing():
    """The reservation itself fails: nothing was reserved, and the retry reconnects."""
    body = {"name": "a"}
    client = Client(("/test/widgets", body), ("/test/widgets", body))
    client.start()
    assert client.ready.wait(10)
    terminate(client.pid, when_state="idle")
    client.proceed.set()
    client.join(30)
    first, retry = client.responses

    assert_storage_unavailable(first)
    assert Operation.calls == 1
    assert (retry.status_code, Widget.objects.count()) == (201, 1)
    assert IdempotencyRecord.objects.get().state == "completed"


def test_operational_error_from_the_operation_is_503_and_frees_the_key(api):
    """As SQLite raises "database is locked" after its timeout: the writes roll back."""
    first = post(api, "/query-after-pause/", {"name": "a", "fail": True})

    assert_storage_unavailable(first)
    assert not Widget.objects.exists()
    assert not IdempotencyRecord.objects.exists()
    retry = post(api, "/query-after-pause/", {"name": "a", "fail": True})
    assert_storage_unavailable(retry)
    assert Operation.calls == 2


def test_release_never_deletes_a_completed_outcome():
    """A commit that reached the database, its acknowledgement lost: the outcome stays."""
    from datetime import timedelta

    store = RecordStore()
    reservation = store.reserve(
        scope="s",
        key="k",
        fingerprint="f",
        method="POST",
        path="/p",
        lease=timedelta(seconds=60),
        expiry=timedelta(hours=1),
    )
    assert isinstance(reservation, Reserved)
    store.complete(reservation, StoredResponse(201, [], b"{}"))

    store.release(reservation)

    assert IdempotencyRecord.objects.get().state == "completed"
