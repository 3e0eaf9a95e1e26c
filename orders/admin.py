from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from orders.models import Order, Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin[Product]):
    list_display = ["sku", "name", "stock"]
    search_fields = ["sku", "name"]


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin[Order]):
    """Orders are placed through the API (stock, email): here they are only read."""

    list_display = ["order_id", "user", "product", "quantity", "status", "created_at"]
    list_filter = ["status"]
    list_select_related = ["user", "product"]
    search_fields = ["order_id", "user__username", "product__sku"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
