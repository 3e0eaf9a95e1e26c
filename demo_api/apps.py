from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DemoApiConfig(AppConfig):
    """The demo API's shared conventions (``demo_api.api``) and faults (``demo_api.faults``)."""

    name = "demo_api"
    verbose_name = _("Demo API conventions")
    default_auto_field = "django.db.models.BigAutoField"
