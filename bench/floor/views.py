"""Each benchmarked operation three ways: plain, with ``IdempotentMixin``, and at the floor.

The plain views are what a user writes; the mixin's are written exactly as the README tells a
user to; the floor's run the same handler inside ``bench.floor.protocol.protect``.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http.response import HttpResponseBase
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bench.floor.models import HOT_ROW_ID, Counter, Note
from bench.floor.protocol import protect
from demo_api.api import caller
from idempotency.mixins import IdempotentMixin
from payments.gateway_keys import gateway_key
from payments.views import PaymentOperations


class NoteRequest(serializers.Serializer[Any]):
    text = serializers.CharField(max_length=200)


class CountRequest(serializers.Serializer[Any]):
    by = serializers.IntegerField(min_value=1, max_value=100)


class NoteOperations(APIView):
    """The cheapest real operation: token authentication and one INSERT."""

    parser_classes = [JSONParser]

    def post(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponseBase:
        given = NoteRequest(data=request.data)
        given.is_valid(raise_exception=True)
        note = Note.objects.create(owner=caller(request), text=given.validated_data["text"])
        return Response({"id": note.pk, "text": note.text}, status=status.HTTP_201_CREATED)


class CounterOperations(APIView):
    """Every request updates the same row, under its lock until the transaction ends."""

    parser_classes = [JSONParser]

    def post(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponseBase:
        given = CountRequest(data=request.data)
        given.is_valid(raise_exception=True)
        # No savepoint: inside a protecting transaction this is part of it (as take_payment).
        with transaction.atomic(savepoint=False):
            counter = Counter.objects.select_for_update().get(pk=HOT_ROW_ID)
            counter.value += given.validated_data["by"]
            counter.save(update_fields=["value"])
        return Response({"value": counter.value}, status=status.HTTP_201_CREATED)


class IdempotentNotes(IdempotentMixin, NoteOperations):
    pass


class IdempotentCounter(IdempotentMixin, CounterOperations):
    pass


class _AtTheFloor(APIView):
    """Runs the view's own ``post`` inside the floor's protocol (put it first among the bases)."""

    # False: the completion, then COMMIT, in two round trips (tools/round_trip_ab.py).
    commit_in_completion = True

    def post(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponseBase:
        handler = super().post  # type: ignore[misc]
        return protect(
            self,
            request,
            lambda scope, key: handler(request, *args, **kwargs),
            commit_in_completion=self.commit_in_completion,
        )


class FloorNotes(_AtTheFloor, NoteOperations):
    pass


class FloorCounter(_AtTheFloor, CounterOperations):
    pass


class TwoTripFloorNotes(FloorNotes):
    """The floor completing in two round trips: the A/B's other arm, not in bin/bench's plans."""

    commit_in_completion = False


class TwoTripFloorCounter(FloorCounter):
    commit_in_completion = False


class FloorPayments(PaymentOperations):
    """The demo's payment at the floor: the same gateway key as ``PaymentViewSet`` derives."""

    floor_gateway_key: str | None = None

    def get_gateway_key(self) -> str | None:
        return self.floor_gateway_key

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        handler = super().create

        def operation(scope: str, key: str) -> HttpResponseBase:
            self.floor_gateway_key = gateway_key(scope, key)
            return handler(request, *args, **kwargs)

        return protect(self, request, operation)  # type: ignore[return-value]
