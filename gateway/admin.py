from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from gateway.models import Charge


@admin.register(Charge)
class ChargeAdmin(admin.ModelAdmin[Charge]):
    """The gateway's ledger: what was charged is history, so nothing here can be edited."""

    list_display = ["charge_id", "amount", "currency", "source", "idempotency_key", "created_at"]
    list_filter = ["currency"]
    search_fields = ["charge_id", "source", "idempotency_key"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
