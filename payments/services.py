"""Taking a payment: charge the card at the gateway, then record the payment."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction

from demo_api.api import new_public_id
from demo_api.faults import DemoCrash, Fault
from gateway import client as gateway
from payments.models import Customer, Payment

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# How long the ``slow`` fault makes the gateway take, in seconds.
SLOW_GATEWAY_SECONDS = 1.0


def take_payment(
    *,
    customer: Customer,
    amount: int,
    currency: str,
    created_by: User,
    gateway_key: str | None,
    fault: Fault | None = None,
) -> Payment:
    """Charge ``customer`` and record the payment, in the caller's transaction.

    The charge commits at the gateway at once, whatever happens here afterwards: with
    ``gateway_key`` a retry of the same operation gets the same charge back; without one
    every call is a new charge.
    """
    # No savepoint: the caller's transaction (the mixin's) rolls the whole operation back.
    with transaction.atomic(savepoint=False):
        charge = gateway.charge(
            amount=amount,
            currency=currency,
            source=customer.customer_id,
            idempotency_key=gateway_key,
            delay=SLOW_GATEWAY_SECONDS if fault is Fault.SLOW else 0.0,
        )
        if fault is Fault.CRASH_AFTER_CHARGE:
            raise DemoCrash()
        # The gateway remembers keys longer than our records live: a key sent again after its
        # record expired gets the first charge back, and the payment it already paid for.
        paid = Payment.objects.filter(charge_id=charge.charge_id).first()
        if paid is not None:
            return paid
        return Payment.objects.create(
            payment_id=new_public_id("pmt"),
            customer=customer,
            amount=amount,
            currency=currency,
            status=Payment.Status.CHARGED,
            charge_id=charge.charge_id,
            created_by=created_by,
        )
