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
from payments.gateway_keys import gateway_key
from payments.models import Payment
from payments.serializers import PaymentRequestSerializer, PaymentSerializer
from payments.services import take_payment

PAYMENT_FAULTS = (Fault.CRASH_AFTER_CHARGE, Fault.SLOW)


class PaymentOperations(
    TextLookupMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[Payment],
):
    """The payments API without idempotency: what ``PaymentViewSet`` protects.

    The retry story runs it to show what a retry does without a key: ``manage.py retry_story``
    in process, and the front page through ``/demo/without-idempotency/payments``, which exists
    in demo mode only (``home.story_api``).
    """

    serializer_class = PaymentSerializer
    parser_classes = [JSONParser]
    lookup_field = "payment_id"

    def get_queryset(self) -> QuerySet[Payment]:
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular, drawing the schema
            return Payment.objects.none()
        return (
            Payment.objects.filter(created_by=caller(self.request))
            .select_related("customer")
            .order_by("-created_at", "-id")
        )

    def get_gateway_key(self) -> str | None:
        """The gateway's idempotency key for this request; without a key of our own, none."""
        return None

    @documented(request=PaymentRequestSerializer, response=PaymentSerializer)
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = PaymentRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        payment = take_payment(
            **serializer.validated_data,
            created_by=caller(request),
            gateway_key=self.get_gateway_key(),
            fault=requested_fault(request, PAYMENT_FAULTS),
        )
        return Response(
            PaymentSerializer(payment).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/payments/{payment.payment_id}"},
        )


# The mixin's as_view() is typed for APIView, not for a viewset's; both accept this call.
class PaymentViewSet(IdempotentMixin, PaymentOperations):
    """``/payments``: every POST needs an ``Idempotency-Key``; a retry never charges twice."""

    def get_gateway_key(self) -> str | None:
        if self.idempotency_key is None or self.idempotency_scope is None:
            return None
        return gateway_key(self.idempotency_scope, self.idempotency_key)
