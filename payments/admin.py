from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from payments.models import Customer, Payment


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin[Customer]):
    list_display = ["customer_id", "name", "email"]
    search_fields = ["customer_id", "name", "email"]


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin[Payment]):
    """Payments are made through the API (and the gateway): here they are only read."""

    list_display = [
        "payment_id",
        "customer",
        "amount",
        "currency",
        "status",
        "charge_id",
        "created_by",
        "created_at",
    ]
    list_filter = ["status", "currency"]
    list_select_related = ["customer", "created_by"]
    search_fields = ["payment_id", "charge_id", "customer__customer_id"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
