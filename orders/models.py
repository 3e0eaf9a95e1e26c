from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Product(models.Model):
    sku = models.SlugField(_("SKU"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=200)
    # Units left to sell. A positive integer field is a CHECK (stock >= 0) in the database too:
    # the last line of defence should the conditional UPDATE in orders.services ever be wrong.
    stock = models.PositiveIntegerField(_("stock"), default=0)

    class Meta:
        verbose_name = _("product")
        verbose_name_plural = _("products")
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} ({self.stock} in stock)"


class Order(models.Model):
    class Status(models.TextChoices):
        CONFIRMED = "confirmed", _("confirmed")

    order_id = models.CharField(_("order id"), max_length=32, unique=True)
    # Who ordered (and receives the confirmation email): the API caller.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="orders",
        verbose_name=_("user"),
    )
    product = models.ForeignKey(
        Product, on_delete=models.PROTECT, related_name="orders", verbose_name=_("product")
    )
    quantity = models.PositiveIntegerField(_("quantity"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        indexes = [
            # GET /orders: the caller's orders, newest first.
            models.Index(fields=["user", "-created_at", "-id"], name="orders_by_user_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id}: {self.quantity} x {self.product.sku}"
