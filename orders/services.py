"""Placing an order: reserve stock, record the order, send the confirmation after the commit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import F

from demo_api.api import new_public_id
from demo_api.faults import DemoCrash, Fault
from orders.exceptions import OutOfStock
from orders.models import Order, Product
from orders.tasks import send_order_confirmation

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def place_order(
    *, user: User, product: Product, quantity: int, fault: Fault | None = None
) -> Order:
    # No savepoint: the caller's transaction (the mixin's) rolls the whole operation back.
    with transaction.atomic(savepoint=False):
        # One conditional UPDATE: the database checks and takes the stock under the row's lock
        # (PostgreSQL re-evaluates the WHERE after waiting for a concurrent writer), so orders
        # racing for the last units can never take more than there is. No read-then-write.
        reserved = Product.objects.filter(pk=product.pk, stock__gte=quantity).update(
            stock=F("stock") - quantity
        )
        if not reserved:
            available = Product.objects.values_list("stock", flat=True).get(pk=product.pk)
            raise OutOfStock(product.sku, quantity, available)
        order = Order.objects.create(
            order_id=new_public_id("ord"),
            user=user,
            product=product,
            quantity=quantity,
            status=Order.Status.CONFIRMED,
        )
        # The confirmation email is a task (orders.tasks), sent after the outermost commit (the
        # idempotency mixin's, which also stores the response), never before: a rolled-back
        # order sends nothing. robust: a broker or mail server failing after the commit must
        # not turn a committed order into a 500, which would free its key for a retry that
        # orders again. (A named function, not functools.partial: Django names the callback
        # when it logs a robust failure, and a partial has no __qualname__.)
        order_id = order.order_id

        def confirm() -> None:
            if send_order_confirmation.app.conf.task_always_eager:
                # In process, without a broker: apply() directly. Eager delay() flips a
                # process-wide Celery flag that concurrent requests (threads) can leave stuck,
                # after which any result.get() in the process raises.
                send_order_confirmation.apply((order_id,))
            else:
                send_order_confirmation.delay(order_id)

        transaction.on_commit(confirm, robust=True)
        if fault is Fault.CRASH_BEFORE_COMMIT:
            raise DemoCrash()
    return order
