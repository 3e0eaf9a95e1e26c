from __future__ import annotations

from django.core.validators import MaxLengthValidator, validate_slug
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from demo_api.api import StrictIntegerField, StrictSerializer, TextLookupField
from orders.models import Order, Product

MAX_QUANTITY = 100
SKU_MAX_LENGTH = Product._meta.get_field("sku").max_length


class OrderRequestSerializer(StrictSerializer):
    """``POST /orders``: ``{"userId": "u1", "sku": "laptop-13", "quantity": 1}``.

    ``userId`` is the caller's own username: an order is placed by, and confirmed to, the
    user whose token sent it.
    """

    userId = serializers.CharField(min_length=1, max_length=150)
    sku = TextLookupField(
        source="product",
        slug_field="sku",
        queryset=Product.objects.all(),
        error_messages={"does_not_exist": _("Unknown product {value!r}.")},
        # A SKU is a slug (Product.sku is a SlugField): other text names no product.
        validators=[MaxLengthValidator(SKU_MAX_LENGTH), validate_slug],
    )
    quantity = StrictIntegerField(min_value=1, max_value=MAX_QUANTITY)

    def validate_userId(self, value: str) -> str:
        username = self.context["request"].user.get_username()
        if value != username:
            raise serializers.ValidationError(
                gettext("Must be your own user id, %(username)r.") % {"username": username}
            )
        return value


class OrderSerializer(serializers.ModelSerializer[Order]):
    orderId = serializers.CharField(source="order_id")
    userId = serializers.CharField(source="user.username")
    sku = serializers.CharField(source="product.sku")
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Order
        fields = ["orderId", "status", "userId", "sku", "quantity", "createdAt"]
        read_only_fields = fields


class ProductSerializer(serializers.ModelSerializer[Product]):
    class Meta:
        model = Product
        fields = ["sku", "name", "stock"]
        read_only_fields = fields
