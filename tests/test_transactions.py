"""The mixin's transactions: its own, with or without ATOMIC_REQUESTS."""

from __future__ import annotations

import pytest
from django.db import connection
from rest_framework.test import APIRequestFactory

from idempotency.models import IdempotencyRecord
from tests.testapp.models import Widget
from tests.testapp.views import WidgetView

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def atomic_requests():
    connection.settings_dict["ATOMIC_REQUESTS"] = True
    yield
    connection.settings_dict["ATOMIC_REQUESTS"] = False


def test_operation_runs_inside_the_mixins_transaction(api):
    response = api.post("/test/atomic-check/", {}, format="json", headers={"Idempotency-Key": "a"})
    assert response.json() == {"in_atomic_block": True}


def test_with_atomic_requests_the_reservation_still_commits_on_its_own(api, atomic_requests):
    """With ATOMIC_REQUESTS the reservation would otherwise wait for the whole request."""
    seen = {}

    from tests.testapp import views

    original = views.Operation.run

    def spy():
        # Inside the operation: only the mixin's own transaction is open (no savepoint under a
        # request-wide one), so the reservation before it was committed on its own.
        seen["depth"] = len(connection.savepoint_ids)
        seen["in_progress"] = IdempotencyRecord.objects.filter(state="in_progress").count()
        original()

    views.Operation.run = staticmethod(spy)
    try:
        response = api.post(
            "/test/widgets", {"name": "a"}, format="json", headers={"Idempotency-Key": "a"}
        )
    finally:
        views.Operation.run = original
    assert response.status_code == 201
    assert seen == {"depth": 0, "in_progress": 1}


def test_with_atomic_requests_failures_still_roll_back_and_release(api, atomic_requests):
    response = api.post(
        "/test/widgets",
        {"name": "a", "behaviour": "503"},
        format="json",
        headers={"Idempotency-Key": "a"},
    )
    assert response.status_code == 503
    assert not Widget.objects.exists()
    assert not IdempotencyRecord.objects.exists()


def test_with_atomic_requests_unprotected_methods_keep_their_transaction(api, atomic_requests):
    assert api.get("/test/atomic-check/").json() == {"in_atomic_block": True}


def test_without_atomic_requests_unprotected_methods_run_in_autocommit(api):
    assert api.get("/test/atomic-check/").json() == {"in_atomic_block": False}


def test_the_operations_transaction_holds_only_what_commits_with_it():
    """The stored headers are resolved before the transaction opens; the operation, the
    decision and the snapshot run inside it (the stored bytes commit with the writes)."""
    seen = {}

    class Spy(WidgetView):
        def get_idempotency_replayed_headers(self):
            seen["replayed headers"] = connection.in_atomic_block
            return super().get_idempotency_replayed_headers()

        def should_store_idempotent_response(self, response, exception):
            seen["decision"] = connection.in_atomic_block
            return super().should_store_idempotent_response(response, exception)

    request = APIRequestFactory().post(
        "/test/widgets", {"name": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="a"
    )
    response = Spy.as_view()(request)

    assert response.status_code == 201
    assert seen == {"replayed headers": False, "decision": True}
