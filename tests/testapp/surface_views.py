"""Views for the Django-surface matrix (tests/test_django_surface.py): the paths real apps take.

Each ``kind`` of operation is reachable through the DRF mixin (``SurfaceView``) and through
``@idempotent`` (``surface_function``), so one row of the matrix drives both entry points.
"""

from __future__ import annotations

import io
import json
import threading
import uuid

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import IntegrityError, transaction
from django.http import FileResponse, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import generics, mixins, permissions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotAuthenticated, PermissionDenied, Throttled
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway.models import Charge
from idempotency.decorators import idempotent
from idempotency.mixins import IdempotentMixin
from idempotency.operations import run_once
from tests.testapp.models import Widget
from tests.testapp.views import Operation

# Named on_commit callbacks: tests count what ran after the commit.
committed: list[str] = []
# Lets a test hold a nested key from another thread while the view tries it.
nested_gate = threading.Event()


def _raise_after_commit() -> None:
    raise RuntimeError("an on_commit callback failed")


def operate(kind: str, name: str) -> HttpResponse:
    """The operation behind every surface view: one widget written, then ``kind`` decides."""
    Operation.run()
    widget = Widget.objects.create(name=name)
    if kind == "ok":
        return JsonResponse({"id": widget.pk}, status=201)
    if kind == "stream":
        return StreamingHttpResponse(
            (f"chunk-{i}-{widget.pk};".encode() for i in range(3)), content_type="text/plain"
        )
    if kind == "file":
        return FileResponse(io.BytesIO(f"file of {widget.pk}".encode()), filename="w.txt")
    if kind == "huge-stream":
        return StreamingHttpResponse(b"x" * 1024 for _ in range(64))
    if kind == "on-commit":
        transaction.on_commit(lambda: committed.append(name))
        return JsonResponse({"id": widget.pk}, status=201)
    if kind == "on-commit-raises":
        transaction.on_commit(_raise_after_commit)
        return JsonResponse({"id": widget.pk}, status=201)
    if kind == "savepoint":
        # A nested atomic() whose failure the operation handles: only its part rolls back.
        try:
            with transaction.atomic():
                Widget.objects.create(name=f"{name}-inner")
                raise ValueError("inner part fails")
        except ValueError:
            pass
        return JsonResponse({"id": widget.pk}, status=201)
    if kind == "caught-integrity-error":
        # What Django's docs warn against: catching a database error without a savepoint.
        try:
            Widget.objects.create(id=widget.pk, name="duplicate")
        except IntegrityError:
            return JsonResponse({"detail": "duplicate"}, status=409)
        return JsonResponse({"id": widget.pk}, status=201)
    if kind == "caught-integrity-error-savepoint":
        try:
            with transaction.atomic():
                Widget.objects.create(id=widget.pk, name="duplicate")
        except IntegrityError:
            return JsonResponse({"detail": "duplicate", "id": widget.pk}, status=409)
        return JsonResponse({"id": widget.pk}, status=201)
    if kind == "nested-in-use":
        # A nested guard whose key another worker holds: IdempotencyKeyInUse escapes.
        result = run_once(lambda: {"nested": True}, scope="surface:nested", key=name)
        return JsonResponse(result, status=201)
    if kind == "second-database":
        Charge.objects.create(
            charge_id=f"ch_{uuid.uuid4().hex[:12]}",
            amount=1,
            currency="USD",
            source=name,
            status=Charge.Status.SUCCEEDED,
        )
        raise RuntimeError("fails after writing to another database")
    if kind == "throttled":
        raise Throttled(wait=7)
    if kind == "forbidden":
        raise PermissionDenied("not yours")
    if kind == "django-forbidden":
        raise DjangoPermissionDenied("not yours")
    if kind == "unauthenticated":
        raise NotAuthenticated()
    if kind == "returned-429":
        return JsonResponse({"detail": "slow down"}, status=429)
    raise AssertionError(f"unknown kind {kind!r}")


class SurfaceView(IdempotentMixin, APIView):
    permission_classes = [AllowAny]

    def post(self, request, *args, **kwargs):
        return operate(request.data.get("kind", "ok"), request.data.get("name", "w"))


@csrf_exempt
@idempotent
def surface_function(request):
    if request.content_type == "application/json":
        data = json.loads(request.body or b"{}")
    else:
        data = request.POST.dict()
    return operate(data.get("kind", "ok"), data.get("name", "w"))


@csrf_exempt
@idempotent(required=False)
def optional_key_function(request):
    return JsonResponse({"in_atomic_block": transaction.get_connection().in_atomic_block})


class OptionalKeyAtomicView(IdempotentMixin, APIView):
    permission_classes = [AllowAny]
    idempotency_required = False

    def post(self, request, *args, **kwargs):
        return Response({"in_atomic_block": transaction.get_connection().in_atomic_block})


class NarrowHeadersView(SurfaceView):
    idempotency_replayed_headers = ["Location"]


class IsNamedOwner(permissions.BasePermission):
    """Object permission: only the user named by the widget may act on it (revocable)."""

    def has_object_permission(self, request, view, obj):
        return obj.name == getattr(request.user, "username", None)


class WidgetSerializer(serializers.ModelSerializer):
    class Meta:
        model = Widget
        fields = ["id", "name", "size"]


class OwnedWidgetViewSet(IdempotentMixin, viewsets.GenericViewSet):
    """Detail actions go through get_object(), so object permissions apply."""

    queryset = Widget.objects.all()
    serializer_class = WidgetSerializer
    permission_classes = [permissions.IsAuthenticated, IsNamedOwner]

    def get_object(self):
        Operation.run()  # counts object lookups: the replay's re-check is one of them
        return super().get_object()

    @action(detail=True, methods=["post"])
    def grow(self, request, pk=None):
        widget = self.get_object()
        widget.size += 1
        widget.save()
        return Response(WidgetSerializer(widget).data)


class CreateOnlyViewSet(IdempotentMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    queryset = Widget.objects.all()
    serializer_class = WidgetSerializer
    permission_classes = [AllowAny]


class WidgetDetailView(IdempotentMixin, generics.RetrieveUpdateDestroyAPIView):
    """PUT and DELETE protected on a generic detail view."""

    queryset = Widget.objects.all()
    serializer_class = WidgetSerializer
    permission_classes = [AllowAny]
    idempotency_methods = ["POST", "PUT", "PATCH", "DELETE"]


class SlowView(IdempotentMixin, APIView):
    """``sleep`` seconds of work; ``fail-first``: the first call fails after its sleep."""

    permission_classes = [AllowAny]

    def post(self, request, *args, **kwargs):
        import time

        Operation.run()
        first = Operation.calls == 1
        widget = Widget.objects.create(name="slow")
        time.sleep(float(request.data.get("sleep", 0)))
        if request.data.get("fail-first") and first:
            raise RuntimeError("the first attempt fails")
        return Response({"id": widget.pk, "call": Operation.calls}, status=201)
