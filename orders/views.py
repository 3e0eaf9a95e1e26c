from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import mixins, status, viewsets
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from demo_api.api import TextLookupMixin, caller, documented
from demo_api.faults import Fault, requested_fault
from idempotency.mixins import IdempotentMixin
from orders.models import Order, Product
from orders.serializers import OrderRequestSerializer, OrderSerializer, ProductSerializer
from orders.services import place_order

ORDER_FAULTS = (Fault.CRASH_BEFORE_COMMIT,)


class OrderOperations(
    TextLookupMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[Order],
):
    """The orders API without idempotency: what ``OrderViewSet`` protects.

    Not routed; the retry story runs it to show what a retry does without a key.
    """

    serializer_class = OrderSerializer
    parser_classes = [JSONParser]
    lookup_field = "order_id"

    def get_queryset(self) -> QuerySet[Order]:
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular, drawing the schema
            return Order.objects.none()
        return (
            Order.objects.filter(user=caller(self.request))
            .select_related("user", "product")
            .order_by("-created_at", "-id")
        )

    @documented(request=OrderRequestSerializer, response=OrderSerializer)
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = OrderRequestSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        order = place_order(
            user=caller(request),
            product=serializer.validated_data["product"],
            quantity=serializer.validated_data["quantity"],
            fault=requested_fault(request, ORDER_FAULTS),
        )
        return Response(
            OrderSerializer(order).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/orders/{order.order_id}"},
        )


# The mixin's as_view() is typed for APIView, not for a viewset's; both accept this call.
class OrderViewSet(IdempotentMixin, OrderOperations):
    """``/orders``: every POST needs an ``Idempotency-Key``; a retry never orders twice."""


class ProductViewSet(TextLookupMixin, viewsets.ReadOnlyModelViewSet[Product]):
    """``GET /products`` and ``GET /products/<sku>``, with the current stock."""

    serializer_class = ProductSerializer
    queryset = Product.objects.order_by("sku")
    lookup_field = "sku"
