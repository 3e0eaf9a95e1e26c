from __future__ import annotations

from importlib import import_module

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class IdempotencyConfig(AppConfig):
    name = "idempotency"
    verbose_name = _("Idempotency")
    # Pinned so a project's DEFAULT_AUTO_FIELD never creates migrations in this app.
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from idempotency import checks  # noqa: F401  (registers the system checks)
        from idempotency.reserve_function import forget

        post_migrate.connect(forget, dispatch_uid="idempotency.reserve_function.forget")

        # Optional integrations cost nothing when their package is absent.
        try:
            import drf_spectacular  # noqa: F401
        except ImportError:
            return
        import_module("idempotency.contrib.drf_spectacular")  # registers the schema extension
