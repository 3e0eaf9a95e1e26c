from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class HomeConfig(AppConfig):
    """The demo's front page (``/``): links to everything, and the retry story played live."""

    name = "home"
    verbose_name = _("Demo front page")
    default_auto_field = "django.db.models.BigAutoField"
