from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Charge(models.Model):
    """One line of the gateway's ledger: money taken from a card, for good."""

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded", _("succeeded")

    charge_id = models.CharField(_("charge id"), max_length=32, unique=True)
    # The gateway's own idempotency key: a retry with the same key gets the same charge.
    # NULL for callers that send none; several NULLs never collide under the unique constraint.
    idempotency_key = models.CharField(_("idempotency key"), max_length=64, null=True, blank=True)
    amount = models.PositiveBigIntegerField(_("amount (minor units)"))
    currency = models.CharField(_("currency"), max_length=3)
    # Whom the merchant charged, as the merchant named them (no foreign key across systems).
    source = models.CharField(_("source"), max_length=64)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("gateway charge")
        verbose_name_plural = _("gateway charges")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["idempotency_key"], name="gateway_charge_idempotency_key_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.charge_id}: {self.amount} {self.currency} from {self.source}"
