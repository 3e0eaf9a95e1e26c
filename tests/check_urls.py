"""A URLconf whose protected views set leases of their own, for the lease check (W003)."""

from __future__ import annotations

from datetime import timedelta

from django.urls import path
from rest_framework.routers import SimpleRouter

from tests.testapp.views import WidgetView, WidgetViewSet


class ShortLeaseView(WidgetView):
    idempotency_lease = timedelta(seconds=5)


class ShortLeaseViewSet(WidgetViewSet):
    pass


class LongLeaseView(WidgetView):
    idempotency_lease = timedelta(minutes=5)


router = SimpleRouter()
router.register("viewset", ShortLeaseViewSet, basename="short")

urlpatterns = [
    path("short/", ShortLeaseView.as_view()),
    path("long/", LongLeaseView.as_view()),
    path(
        "action/",
        ShortLeaseViewSet.as_view({"post": "create"}, idempotency_lease=timedelta(seconds=10)),
    ),
    *router.urls,
]
