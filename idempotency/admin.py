"""A read-only audit view of the records: what ran, for whom, and what was answered.

The table holds a day of traffic, millions of rows, so every page view stays on an index: the
list loads only its short columns (bodies and headers only on the detail page), sorts only in
the orders an index serves, counts at most :data:`COUNT_LIMIT` rows, searches by equality on
indexed columns, and offers only filters an index serves and that list their choices without a
query (no date hierarchy, no method filter: both read every row for their choices).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _

from idempotency.models import IdempotencyRecord
from idempotency.scope_labels import model_scope_labels

# A list counts at most this many matching rows (so it offers at most ten pages of 100): an
# exact count of a million rows reads them all, and counting a scope that owns a tenth of the
# table up to N reads 10 N rows. Filter or search to reach further.
COUNT_LIMIT = 1000

# What the list needs; the response body and headers load only on the detail page.
LIST_COLUMNS = (
    "scope",
    "key",
    "state",
    "method",
    "path",
    "response_status",
    "created_at",
    "expires_at",
)

_FIELDS = (
    "scope",
    "scope_name",
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
    _Paginator = Paginator[IdempotencyRecord]
else:  # ModelAdmin and Paginator are generic only in django-stubs
    _RecordAdminBase = admin.ModelAdmin
    _Paginator = Paginator


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


class CappedPaginator(_Paginator):
    """Counts at most ``COUNT_LIMIT + 1`` rows, walking the page's own index order."""

    @cached_property
    def count(self) -> int:
        queryset = cast("QuerySet[IdempotencyRecord]", self.object_list)
        return queryset[: COUNT_LIMIT + 1].count()


class RecordChangeList(ChangeList):
    count_limit = COUNT_LIMIT

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        return super().get_queryset(request, exclude_parameters).only(*LIST_COLUMNS)

    def get_ordering(self, request: HttpRequest, queryset: QuerySet[Any]) -> list[Any]:
        # Only the admin's orders, each served by an index; a crafted ?o= sorts nothing else.
        return [*self.model_admin.get_ordering(request), "-pk"]

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        records = list(self.result_list)  # the page, fetched once: the template reuses it
        model_admin = cast("IdempotencyRecordAdmin", self.model_admin)
        labels = model_admin.get_scope_labels(request, {r.scope for r in records})
        for record in records:
            record._scope_label = labels.get(record.scope)


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(_RecordAdminBase):
    list_display = [
        "key_display",
        "scope_display",
        "request_display",
        "outcome",
        "created",
    ]
    list_display_links = ["key_display"]
    list_filter = ["state", ExpiryFilter, ("created_at", admin.DateFieldListFilter)]
    search_fields = ["=key", "=scope"]  # shows the search box; get_search_results does the work
    search_help_text = _("An exact key, or an exact scope such as auth.user:2.")
    sortable_by = ()
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedPaginator
    fields = _FIELDS
    readonly_fields = _FIELDS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: IdempotencyRecord | None = None
    ) -> bool:
        return False

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return RecordChangeList

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        # Expired records are the oldest: newest first would pass every live row to reach them.
        if request.GET.get(ExpiryFilter.parameter_name) == "yes":
            return ("-expires_at",)
        return ("-created_at",)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[IdempotencyRecord], search_term: str
    ) -> tuple[QuerySet[IdempotencyRecord], bool]:
        """An exact, case-sensitive key or scope: each an equality an index serves.

        (Django's ``=field`` search compares ``UPPER(field)``, which no plain index serves, and
        keys are case-sensitive anyway.)
        """
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(key=term) | Q(scope=term)), False

    def get_scope_labels(self, request: HttpRequest, scopes: Collection[str]) -> Mapping[str, str]:
        """Names for a page's ``scopes``, resolved at once: ``{scope: name}``.

        The default names scopes of the form ``app_label.model:pk`` (``SCOPE_FUNCTION``'s
        default, ``auth.user:2``) by the object's ``str()``, one query per model, for models
        the admin user may view. Override it for scopes of your own; a scope left out of the
        result is shown as it is stored.
        """
        return model_scope_labels(request.user, scopes)

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> IdempotencyRecord | None:
        record = super().get_object(request, object_id, from_field)
        if record is not None:
            labels = self.get_scope_labels(request, [record.scope])
            record._scope_label = labels.get(record.scope)  # type: ignore[attr-defined]
        return record

    # The list's columns fit a 1366-pixel screen beside the admin's sidebar and filters: long
    # values are cut, in full on hover and on the detail page.
    @admin.display(description=_("key"))
    def key_display(self, obj: IdempotencyRecord) -> SafeString:
        return format_html('<span title="{}">{}</span>', obj.key, Truncator(obj.key).chars(18))

    @admin.display(description=_("scope"))
    def scope_display(self, obj: IdempotencyRecord) -> SafeString:
        """The scope's name (the stored scope on hover), linked to a search for its records."""
        label = Truncator(getattr(obj, "_scope_label", None) or obj.scope).chars(20)
        href = "?" + urlencode({"q": obj.scope})
        return format_html('<a href="{}" title="{}">{}</a>', href, obj.scope, label)

    @admin.display(description=_("whose"))
    def scope_name(self, obj: IdempotencyRecord) -> str:
        return getattr(obj, "_scope_label", None) or "-"

    @admin.display(description=_("request"))
    def request_display(self, obj: IdempotencyRecord) -> SafeString:
        path = Truncator(obj.path).chars(24)
        return format_html('<span title="{}">{} {}</span>', obj.path, obj.method, path)

    @admin.display(description=_("outcome"))
    def outcome(self, obj: IdempotencyRecord) -> str:
        """The stored status once completed; else the state (*in progress*)."""
        if obj.state == IdempotencyRecord.State.COMPLETED and obj.response_status is not None:
            return str(obj.response_status)
        return str(obj.get_state_display())

    @admin.display(description=_("created"))
    def created(self, obj: IdempotencyRecord) -> str:
        text = date_format(timezone.localtime(obj.created_at), "Y-m-d H:i")
        return text.replace("-", "\u2011").replace(
            " ", "\u00a0"
        )  # one line: no-break hyphen and space

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
