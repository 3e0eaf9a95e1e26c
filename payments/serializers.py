from __future__ import annotations

from typing import Any

from django.core.validators import MaxLengthValidator, MinLengthValidator
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from demo_api.api import StrictIntegerField, StrictSerializer, TextLookupField
from payments.models import SUPPORTED_CURRENCIES, Customer, Payment

# Eight digits of minor units, as card processors commonly cap a single charge.
MAX_AMOUNT = 99_999_999
CUSTOMER_ID_MAX_LENGTH = Customer._meta.get_field("customer_id").max_length


class CurrencyField(serializers.ChoiceField):
    """An ISO 4217 code the shop supports, exactly as listed (``USD``, not ``usd``)."""

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, str) and data in self.choices:
            return data
        raise serializers.ValidationError(
            gettext("%(input)r is not a supported currency; use one of %(choices)s.")
            % {"input": data, "choices": ", ".join(self.choices)},
            code="invalid_choice",
        )


class PaymentRequestSerializer(StrictSerializer):
    """``POST /payments``: ``{"customerId": "cust_123", "amount": 100, "currency": "USD"}``."""

    customerId = TextLookupField(
        source="customer",
        slug_field="customer_id",
        queryset=Customer.objects.all(),
        error_messages={"does_not_exist": _("Unknown customer {value!r}.")},
        validators=[MinLengthValidator(1), MaxLengthValidator(CUSTOMER_ID_MAX_LENGTH)],
    )
    amount = StrictIntegerField(min_value=1, max_value=MAX_AMOUNT)
    currency = CurrencyField(choices=SUPPORTED_CURRENCIES)


class PaymentSerializer(serializers.ModelSerializer[Payment]):
    paymentId = serializers.CharField(source="payment_id")
    customerId = serializers.CharField(source="customer.customer_id")
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Payment
        fields = ["paymentId", "status", "customerId", "amount", "currency", "createdAt"]
        read_only_fields = fields
