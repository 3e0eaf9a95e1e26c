from __future__ import annotations

from rest_framework import serializers

from gateway.models import Charge


class ChargeSerializer(serializers.ModelSerializer[Charge]):
    chargeId = serializers.CharField(source="charge_id")
    idempotencyKey = serializers.CharField(source="idempotency_key", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Charge
        fields = [
            "chargeId",
            "status",
            "amount",
            "currency",
            "source",
            "idempotencyKey",
            "createdAt",
        ]
        read_only_fields = fields
