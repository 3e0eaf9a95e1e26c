from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from demo_api.api import OptionalSlashRouter
from gateway.views import ChargeViewSet
from orders.views import OrderViewSet, ProductViewSet
from payments.views import PaymentViewSet
from payments.webhooks import gateway_webhook

# Every API path answers with and without a trailing slash.
router = OptionalSlashRouter()
router.register("payments", PaymentViewSet, basename="payment")
router.register("orders", OrderViewSet, basename="order")
router.register("products", ProductViewSet, basename="product")
router.register("gateway/charges", ChargeViewSet, basename="gateway-charge")

# Unexpected errors: a problem (application/problem+json) for API clients, never a traceback.
handler500 = "demo_api.errors.server_error"

urlpatterns = [
    path("", include("home.urls")),
    path("admin/", admin.site.urls),
    path("webhooks/gateway/", gateway_webhook, name="gateway-webhook"),
    *router.urls,
]

if getattr(
    settings, "OPENAPI_DOCS", False
):  # the schema and offline docs (drf-spectacular and its sidecar)
    from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

    urlpatterns += [
        path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
        path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    ]
