"""Keep the gateway's ledger on the ``gateway`` database alias, outside the shop's transactions."""

from __future__ import annotations

from typing import Any

from django.db.models import Model

GATEWAY_ALIAS = "gateway"
GATEWAY_APP = "gateway"


class GatewayRouter:
    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        return GATEWAY_ALIAS if model._meta.app_label == GATEWAY_APP else None

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        return GATEWAY_ALIAS if model._meta.app_label == GATEWAY_APP else None

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        # No foreign keys across systems: a payment keeps the charge id as plain text.
        if GATEWAY_APP in (obj1._meta.app_label, obj2._meta.app_label):
            return obj1._meta.app_label == obj2._meta.app_label
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        # The gateway's tables go everywhere they may be needed: on PostgreSQL the alias shares
        # the default database (and its django_migrations table), so they must be created by a
        # plain ``migrate``. Nothing of the shop goes into the gateway's own database.
        if app_label == GATEWAY_APP:
            return True
        if db == GATEWAY_ALIAS:
            return False
        return None
