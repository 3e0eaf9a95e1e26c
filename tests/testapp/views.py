"""Views whose operation is steered by the request, to walk every row of the HTTP contract.

``Operation.calls`` counts executions outside any transaction, like a card charge would be.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from idempotency.mixins import IdempotentMixin
from tests.testapp.models import Widget


class Operation:
    calls = 0
    lock = threading.Lock()

    @classmethod
    def run(cls) -> None:
        with cls.lock:
            cls.calls += 1


class WidgetSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    size = serializers.IntegerField(default=1)
    behaviour = serializers.CharField(required=False, default="ok")
    sleep = serializers.FloatField(required=False, default=0)


class WidgetView(IdempotentMixin, APIView):
    """POST creates a widget; ``behaviour`` picks how the operation ends."""

    permission_classes = [AllowAny]

    def post(self, request, *args, **kwargs):
        serializer = WidgetSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        Operation.run()
        widget = Widget.objects.create(name=data["name"], size=data["size"])
        if data["sleep"]:
            time.sleep(data["sleep"])
        behaviour = data["behaviour"]
        if behaviour == "crash":
            raise RuntimeError("operation crashed")
        if behaviour == "not-found":
            raise NotFound("no such thing")
        if behaviour == "503":
            return Response({"detail": "upstream down"}, status=503)
        if behaviour == "409":
            return Response({"detail": "business conflict"}, status=409)
        response = Response(
            {"id": widget.pk, "name": widget.name, "size": widget.size},
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/widgets/{widget.pk}", "X-Not-Replayed": "1"},
        )
        response.set_cookie("session-ish", "secret")
        return response

    def patch(self, request, *args, **kwargs):
        Operation.run()
        return Response({"patched": True})

    def put(self, request, *args, **kwargs):
        Operation.run()
        return Response({"put": True})


class OptionalKeyWidgetView(WidgetView):
    idempotency_required = False


class PutProtectedView(WidgetView):
    idempotency_methods = ["PUT"]


class AuthenticatedWidgetView(WidgetView):
    permission_classes = [IsAuthenticated]


class ThrottledWidgetView(WidgetView):
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "tiny"


class WidgetViewSet(IdempotentMixin, viewsets.ViewSet):
    permission_classes = [AllowAny]

    def create(self, request):
        Operation.run()
        widget = Widget.objects.create(name=request.data.get("name", "viewset"))
        return Response({"id": widget.pk}, status=201)

    @action(detail=True, methods=["post"])
    def grow(self, request, pk=None):
        Operation.run()
        updated = Widget.objects.filter(pk=pk).update(size=F("size") + 1)
        if not updated:
            raise NotFound()
        return Response({"id": int(pk), "grown": True})

    @action(detail=False, methods=["post"], idempotency_required=False)
    def ping(self, request):
        Operation.run()
        return Response({"pong": True})


class AtomicCheckView(IdempotentMixin, APIView):
    """Answers whether the operation runs inside a transaction and whether that is ours."""

    permission_classes = [AllowAny]

    def post(self, request, *args, **kwargs):
        Operation.run()
        return Response({"in_atomic_block": transaction.get_connection().in_atomic_block})

    def get(self, request, *args, **kwargs):
        return Response({"in_atomic_block": transaction.get_connection().in_atomic_block})


class ShortLeaseWidgetView(WidgetView):
    """Holds its keys for 300 ms, so a slow operation outlives its lease."""

    idempotency_lease = timedelta(milliseconds=300)


class CrashIfFirstWidgetView(ShortLeaseWidgetView):
    """The first attempt sleeps past its lease, then crashes; later attempts succeed."""

    def post(self, request, *args, **kwargs):
        Operation.run()
        first = Operation.calls == 1
        widget = Widget.objects.create(name=request.data.get("name", "w"))
        if first:
            time.sleep(1.0)
            raise RuntimeError("first attempt crashed after losing its lease")
        return Response({"id": widget.pk}, status=status.HTTP_201_CREATED)
