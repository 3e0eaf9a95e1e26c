"""The demo's URLs plus the baseline: the same payment operation without the mixin."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path, re_path

from config.urls import urlpatterns as demo_urlpatterns
from payments.views import PaymentOperations


def ping(request: HttpRequest) -> HttpResponse:
    """Readiness probe: answers once a worker has loaded the project (no database)."""
    return HttpResponse(b"ok", content_type="text/plain")


urlpatterns = [
    path("bench/ping", ping),
    # PaymentOperations is PaymentViewSet without IdempotentMixin: the same create(), serializer,
    # gateway charge and Payment row; with no key of its own it asks the gateway for a new charge.
    re_path(
        r"^bench/baseline/payments/?$",
        PaymentOperations.as_view({"post": "create"}),
        name="bench-baseline-payments",
    ),
    *demo_urlpatterns,
]
