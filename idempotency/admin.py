"""A read-only audit view of the records: what ran, for whom, and what was answered."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from idempotency.models import IdempotencyRecord

_FIELDS = (
    "scope",
    "key",
    "state",
    "method",
    "path",
    "fingerprint",
    "response_status",
    "replayed_headers",
    "stored_body",
    "lease_token",
    "locked_until",
    "created_at",
    "completed_at",
    "expires_at",
)

if TYPE_CHECKING:
    _RecordAdminBase = admin.ModelAdmin[IdempotencyRecord]
else:  # ModelAdmin is generic only in django-stubs
    _RecordAdminBase = admin.ModelAdmin


class ExpiryFilter(admin.SimpleListFilter):
    title = _("expiry")
    parameter_name = "expired"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("expired")), ("no", _("live"))]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[IdempotencyRecord]
    ) -> QuerySet[IdempotencyRecord]:
        now = timezone.now()
        if self.value() == "yes":
            return queryset.filter(expires_at__lte=now)
        if self.value() == "no":
            return queryset.filter(expires_at__gt=now)
        return queryset


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(_RecordAdminBase):
    list_display = [
        "key",
        "scope",
        "state",
        "method",
        "path",
        "response_status",
        "created_at",
        "expires_at",
    ]
    list_filter = ["state", ExpiryFilter, "method"]
    search_fields = ["=key", "scope", "path"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    fields = _FIELDS
    readonly_fields = _FIELDS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: IdempotencyRecord | None = None
    ) -> bool:
        return False

    @admin.display(description=_("replayed headers"))
    def replayed_headers(self, obj: IdempotencyRecord) -> SafeString:
        lines = "\n".join(f"{name}: {value}" for name, value in obj.response_headers)
        return format_html("<pre>{}</pre>", lines)

    @admin.display(description=_("stored body"))
    def stored_body(self, obj: IdempotencyRecord) -> SafeString:
        return format_html("<pre>{}</pre>", readable_body(bytes(obj.response_body)))


def readable_body(body: bytes) -> str:
    """Pretty JSON when the body is JSON, else the text, else a note on its size."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return f"<{len(body)} bytes of binary data>"
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text
