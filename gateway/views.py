from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import mixins, viewsets

from gateway.models import Charge
from gateway.serializers import ChargeSerializer


class ChargeViewSet(mixins.ListModelMixin, viewsets.GenericViewSet[Charge]):
    """``GET /gateway/charges``: the gateway's ledger, newest first, read-only."""

    serializer_class = ChargeSerializer

    def get_queryset(self) -> QuerySet[Charge]:
        return Charge.objects.order_by("-created_at", "-id")
