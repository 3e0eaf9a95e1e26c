"""The protected views of the URLconf, with their own lease and expiry, for the system checks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from idempotency.options import InvalidOption, optional_duration


@dataclass(frozen=True)
class ProtectedView:
    """A protected view in the URLconf, with its own lease and expiry (``None``: the setting)."""

    where: str
    lease_fix: str
    expiry_fix: str
    lease: timedelta | None
    expiry: timedelta | None


def protected_views() -> list[ProtectedView]:
    """Each protected view in the URLconf: mixin views, viewset actions and ``@idempotent``."""
    from django.urls import URLPattern, URLResolver, get_resolver

    from idempotency.decorators import IdempotentViewOptions
    from idempotency.mixins import IdempotentMixin

    def walk(patterns: Iterable[Any]) -> Iterator[ProtectedView]:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                yield from walk(entry.url_patterns)
            elif isinstance(entry, URLPattern):
                callback = entry.callback
                name = getattr(callback, "__qualname__", repr(callback))
                view_class = getattr(callback, "cls", None)
                options = getattr(callback, "idempotency", None)
                if isinstance(view_class, type) and issubclass(view_class, IdempotentMixin):
                    initkwargs = getattr(callback, "initkwargs", {})
                    name = view_class.__qualname__
                    lease = initkwargs.get("idempotency_lease", view_class.idempotency_lease)
                    expiry = initkwargs.get("idempotency_expiry", view_class.idempotency_expiry)
                    lease_fix = f"{name}.idempotency_lease"
                    expiry_fix = f"{name}.idempotency_expiry"
                elif isinstance(options, IdempotentViewOptions):
                    lease, expiry = options.lease, options.expiry
                    lease_fix = f"@idempotent(lease=...) on {name}"
                    expiry_fix = f"@idempotent(expiry=...) on {name}"
                else:
                    continue
                where = f"view {name} ({entry.pattern})"
                try:
                    # Refused where they are set; only a value patched in later can fail here,
                    # and the view's requests report it.
                    lease = optional_duration(lease, lease_fix)
                    expiry = optional_duration(expiry, expiry_fix)
                except InvalidOption:
                    continue
                yield ProtectedView(where, lease_fix, expiry_fix, lease, expiry)

    try:
        patterns = get_resolver().url_patterns
    except Exception:  # a broken URLconf is reported by Django's own urls check
        return []
    return sorted(set(walk(patterns)), key=lambda view: (view.where, view.lease_fix))
