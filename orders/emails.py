"""The order confirmation email, sent once the order has committed."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.utils.translation import gettext

from orders.models import Order

logger = logging.getLogger(__name__)


def send_order_confirmation(order_pk: int) -> None:
    order = Order.objects.select_related("user", "product").get(pk=order_pk)
    recipient = order.user.email
    if not recipient:
        logger.info(
            "order %s: user %s has no email address; no confirmation",
            order.order_id,
            order.user.get_username(),
        )
        return
    send_mail(
        subject=gettext("Order %(order_id)s confirmed") % {"order_id": order.order_id},
        message=gettext("%(quantity)d x %(product)s (%(sku)s) are reserved for you.")
        % {"quantity": order.quantity, "product": order.product.name, "sku": order.product.sku},
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[recipient],
    )
