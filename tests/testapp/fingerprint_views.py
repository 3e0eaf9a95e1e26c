"""Views for the fingerprint tests: routes with non-JSON path arguments, Decimal-parsed bodies."""

from __future__ import annotations

import json
from decimal import Decimal

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from idempotency.decorators import idempotent
from idempotency.mixins import IdempotentMixin
from tests.testapp.models import Widget
from tests.testapp.views import Operation


@csrf_exempt
@idempotent
def widget_at(request, **kwargs):
    """A plain view on routes with converters; the path arguments are not used."""
    data = json.loads(request.body or b"{}")
    Operation.run()
    widget = Widget.objects.create(name=data.get("name", "w"))
    return JsonResponse({"id": widget.pk}, status=201)


class DecimalJSONParser(JSONParser):
    """JSON with every non-integer number parsed as ``Decimal``, as money APIs often do."""

    def parse(self, stream, media_type=None, parser_context=None):
        return json.load(stream, parse_float=Decimal)


class AmountSerializer(serializers.Serializer):
    amount = serializers.DecimalField(max_digits=12, decimal_places=2)


class AmountView(IdempotentMixin, APIView):
    """Charges ``amount``; the serializer refuses what is not a sensible amount."""

    permission_classes = [AllowAny]
    parser_classes = [DecimalJSONParser]

    def post(self, request, *args, **kwargs):
        serializer = AmountSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        Operation.run()
        widget = Widget.objects.create(name=str(serializer.validated_data["amount"]))
        return Response({"id": widget.pk, "amount": widget.name}, status=status.HTTP_201_CREATED)
