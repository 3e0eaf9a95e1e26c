"""The demo's URLs plus the benchmark's: each operation plain, with the mixin, and at the floor.

The paths are listed by operation in bench/plan.py.
"""

from __future__ import annotations

import os

from django.http import HttpRequest, HttpResponse
from django.urls import path, re_path

from bench.floor import views
from bench.loadgen import WORKER_HEADER
from config.urls import urlpatterns as demo_urlpatterns
from payments.views import PaymentOperations, PaymentViewSet


def ping(request: HttpRequest) -> HttpResponse:
    """Readiness probe: answers once a worker has loaded the project (no database). Names the
    worker process, so the load generator can spread its connections (bench/loadgen.py)."""
    return HttpResponse(b"ok", content_type="text/plain", headers={WORKER_HEADER: str(os.getpid())})


urlpatterns = [
    path("bench/ping", ping),
    # PaymentOperations is PaymentViewSet without IdempotentMixin: the same create(), serializer,
    # gateway charge and Payment row; with no key of its own it asks the gateway for a new charge.
    re_path(
        r"^bench/baseline/payments/?$",
        PaymentOperations.as_view({"post": "create"}),
        name="bench-baseline-payments",
    ),
    path("bench/floor/payments", views.FloorPayments.as_view({"post": "create"})),
    # The demo's PaymentViewSet itself (what /payments serves), routed beside its baseline and
    # floor: /payments resolves after every pattern above and the demo's own, which cost the
    # mixin's requests about 800 more Python opcodes of URL resolving than the floor's.
    path(
        "bench/idempotent/payments",
        PaymentViewSet.as_view({"post": "create"}, basename="payment", detail=False),
    ),
    path("bench/baseline/notes", views.NoteOperations.as_view()),
    path("bench/idempotent/notes", views.IdempotentNotes.as_view()),
    path("bench/floor/notes", views.FloorNotes.as_view()),
    path("bench/baseline/counter", views.CounterOperations.as_view()),
    path("bench/idempotent/counter", views.IdempotentCounter.as_view()),
    path("bench/floor/counter", views.FloorCounter.as_view()),
    path("bench/floor-two-trips/notes", views.TwoTripFloorNotes.as_view()),
    path("bench/floor-two-trips/counter", views.TwoTripFloorCounter.as_view()),
    *demo_urlpatterns,
]
