from __future__ import annotations

from django.contrib import admin
from django.urls import path

from config.api import OptionalSlashRouter
from gateway.views import ChargeViewSet
from orders.views import OrderViewSet, ProductViewSet
from payments.views import PaymentViewSet

# Every API path answers with and without a trailing slash.
router = OptionalSlashRouter()
router.register("payments", PaymentViewSet, basename="payment")
router.register("orders", OrderViewSet, basename="order")
router.register("products", ProductViewSet, basename="product")
router.register("gateway/charges", ChargeViewSet, basename="gateway-charge")

urlpatterns = [
    path("admin/", admin.site.urls),
    *router.urls,
]
