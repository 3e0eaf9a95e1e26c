from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

# ISO 4217 codes the shop accepts; amounts are integers in each currency's minor unit
# (cents for USD, yen for JPY).
SUPPORTED_CURRENCIES = ("USD", "EUR", "GBP", "CHF", "JPY")


class Customer(models.Model):
    """Someone the shop may charge, known to API callers by ``customer_id`` (``cust_123``)."""

    customer_id = models.CharField(_("customer id"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=200)
    email = models.EmailField(_("email"), blank=True)

    class Meta:
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        ordering = ["customer_id"]

    def __str__(self) -> str:
        return f"{self.customer_id} ({self.name})"


class Payment(models.Model):
    """A charge the shop took and recorded: one per gateway charge, never two."""

    class Status(models.TextChoices):
        CHARGED = "charged", _("charged")

    payment_id = models.CharField(_("payment id"), max_length=32, unique=True)
    customer = models.ForeignKey(
        Customer, on_delete=models.PROTECT, related_name="payments", verbose_name=_("customer")
    )
    amount = models.PositiveBigIntegerField(_("amount (minor units)"))
    currency = models.CharField(_("currency"), max_length=3)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices)
    # The gateway's charge id, as text: the gateway is another system (another database).
    charge_id = models.CharField(_("gateway charge id"), max_length=32)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="payments",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("payment")
        verbose_name_plural = _("payments")
        constraints = [
            # A charge paid for two payments would be a double-count; refuse it in the database.
            models.UniqueConstraint(fields=["charge_id"], name="payments_payment_charge_unique"),
        ]
        indexes = [
            # GET /payments: the caller's payments, newest first.
            models.Index(
                fields=["created_by", "-created_at", "-id"], name="payments_by_creator_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.payment_id}: {self.amount} {self.currency} from {self.customer.customer_id}"
