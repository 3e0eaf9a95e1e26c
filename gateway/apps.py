from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class GatewayConfig(AppConfig):
    """A simulated card processor: an external system with its own ledger and its own keys."""

    name = "gateway"
    verbose_name = _("Card gateway (simulated)")
    default_auto_field = "django.db.models.BigAutoField"
