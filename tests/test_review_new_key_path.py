"""Review of the new key's cheaper path (627b9fe, b991280, 4e999f0): defects, each as a test.

Each test fails on the reviewed code and passes once its defect is fixed; each passes at
3924d17, the commit before the change.
"""

from __future__ import annotations

import json
import logging

import pytest
from django.db import close_old_connections, connection
from django.http import JsonResponse
from django.test import Client
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from idempotency.decorators import idempotent
from idempotency.exceptions import TransactionAborted
from idempotency.mixins import IdempotentMixin
from idempotency.models import IdempotencyRecord
from idempotency.store import RecordStore, StoredResponse
from tests.test_new_key_path import reserved_attempt
from tests.testapp.models import Widget

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls(__name__),
]

# 1. A transaction marked for rollback because its connection was closed inside it ----------
#
# Attempt.complete no longer checks connection.needs_rollback: it relies on Django's cursor to
# refuse the completion with TransactionManagementError. But Django checks needs_rollback when
# the statement executes, after the cursor is created; a connection closed inside the
# transaction (connection.close(), close_old_connections(), so any request_finished sent by the
# operation, which Django marks needs_rollback and closed_in_transaction) fails at the cursor's
# creation first: psycopg's "the connection is closed" (OperationalError, answered 503 as a
# database failure a client should retry) on PostgreSQL, sqlite3's "Cannot operate on a closed
# database" (ProgrammingError, an unhandled 500) on SQLite. Before, both were TransactionAborted:
# the documented 500 transaction-aborted and its log line saying what to change.


def _operation_that_closes_its_connection() -> JsonResponse:
    widget = Widget.objects.create(name="w", size=1)
    # What Django's request_finished receiver runs, and what any code calling it (a response
    # closed inside the view, a helper meant for long-running workers) does inside the view.
    close_old_connections()
    return JsonResponse({"id": widget.pk}, status=201)


class ClosingView(IdempotentMixin, APIView):
    permission_classes = [AllowAny]

    def post(self, request, *args, **kwargs):
        return _operation_that_closes_its_connection()


@csrf_exempt
@idempotent
def closing_function(request):
    return _operation_that_closes_its_connection()


def test_a_connection_closed_inside_the_operation_is_a_transaction_aborted_for_the_store():
    attempt = reserved_attempt(RecordStore())
    with (
        pytest.raises(TransactionAborted),
        attempt.holding(),
        attempt.transaction() as operation,
    ):
        Widget.objects.create(name="w", size=1)
        close_old_connections()
        assert connection.needs_rollback  # Django marked the transaction for rollback
        operation.complete(StoredResponse(201, [], b"{}"))
    assert operation.aborted
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize("url", ["/closing-mixin", "/closing-function"])
def test_a_connection_closed_inside_the_operation_answers_transaction_aborted(url, caplog):
    client = Client(raise_request_exception=False)
    with caplog.at_level(logging.ERROR, logger="idempotency"):
        response = client.post(
            url, "{}", content_type="application/json", headers={"Idempotency-Key": "closed-1"}
        )
    assert response.status_code == 500
    assert response["Content-Type"] == "application/problem+json"
    assert json.loads(response.content)["type"].endswith(":transaction-aborted")
    assert "transaction.atomic()" in caplog.text  # the log line that says what to change
    assert not Widget.objects.exists()
    assert not IdempotencyRecord.objects.exists()  # released: a retry runs again


# 2. The mixin runs the handler it looked up before initial() -------------------------------
#
# APIView.dispatch looks the handler up after initialize_request() and initial(), and the mixin
# did too ("Mirrors APIView.dispatch"). _protected_handler() now looks it up once, before either
# ran: a view that binds its handler there (by API version, say) runs the stale one, but only
# when the request is protected (a keyless request on an optional view still runs the new one).


class VersionedView(IdempotentMixin, APIView):
    permission_classes = [AllowAny]
    idempotency_required = False

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.headers.get("X-Api-Version") == "2":
            self.post = self.post_v2

    def post(self, request, *args, **kwargs):
        return Response({"version": 1}, status=201)

    def post_v2(self, request, *args, **kwargs):
        return Response({"version": 2}, status=201)


def test_the_mixin_runs_the_handler_drf_would_run_after_initial():
    client = Client()
    headers = {"X-Api-Version": "2"}
    unprotected = client.post("/versioned", "{}", content_type="application/json", headers=headers)
    protected = client.post(
        "/versioned",
        "{}",
        content_type="application/json",
        headers={**headers, "Idempotency-Key": "v2-1"},
    )
    assert unprotected.json() == {"version": 2}  # DRF's own dispatch
    assert protected.json() == {"version": 2}


urlpatterns = [
    path("closing-mixin", ClosingView.as_view()),
    path("closing-function", closing_function),
    path("versioned", VersionedView.as_view()),
]
