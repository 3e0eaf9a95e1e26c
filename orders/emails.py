"""The order confirmation email: what ``orders.tasks.send_order_confirmation`` sends."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.utils.translation import gettext

from orders.models import Order

logger = logging.getLogger(__name__)


def send_confirmation(order_id: str) -> str | None:
    """Email the order's user; return the address, or ``None`` for a user without one."""
    order = Order.objects.select_related("user", "product").get(order_id=order_id)
    recipient = order.user.email
    if not recipient:
        logger.info(
            "order %s: user %s has no email address; no confirmation",
            order.order_id,
            order.user.get_username(),
        )
        return None
    send_mail(
        subject=gettext("Order %(order_id)s confirmed") % {"order_id": order.order_id},
        message=gettext("%(quantity)d x %(product)s (%(sku)s) are reserved for you.")
        % {"quantity": order.quantity, "product": order.product.name, "sku": order.product.sku},
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[recipient],
    )
    return recipient
