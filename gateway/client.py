"""The merchant's side of the card gateway: ``charge()``, deduplicated on the caller's key.

The ledger is written on the gateway's own database alias, committed before ``charge()``
returns: like a real processor's, a charge survives whatever happens to the caller's
transaction afterwards. Only the caller's idempotency key stops a retry from charging again.
"""

from __future__ import annotations

import secrets
import time

from django.db import IntegrityError, router, transaction
from django.utils.translation import gettext_lazy as _
from rest_framework import status

from gateway.models import Charge
from idempotency.exceptions import ProblemDetailsError


class GatewayKeyReused(ProblemDetailsError):
    """The gateway saw this key before, for another charge: it refuses, as real ones do."""

    status_code = status.HTTP_502_BAD_GATEWAY
    problem_type = "gateway-key-reused"
    title = _("Payment gateway refused the charge")
    default_detail = _("The card gateway already used this idempotency key for a different charge.")
    default_code = "gateway_key_reused"


def charge(
    *,
    amount: int,
    currency: str,
    source: str,
    idempotency_key: str | None = None,
    delay: float = 0.0,
) -> Charge:
    """Take ``amount`` from ``source``, once per ``idempotency_key``.

    A repeated key with the same amount, currency and source returns the original charge; with
    different ones it raises :class:`GatewayKeyReused`. ``delay`` simulates a slow network.
    """
    if delay:
        time.sleep(delay)
    using = router.db_for_write(Charge)
    fields = {"amount": amount, "currency": currency, "source": source}
    try:
        # Outside any transaction on its alias this is one autocommitted INSERT; two attempts
        # racing on one key meet at the unique constraint and the second reads the first.
        with transaction.atomic(using=using):
            return Charge.objects.using(using).create(
                charge_id=f"ch_{secrets.token_hex(12)}",
                idempotency_key=idempotency_key,
                status=Charge.Status.SUCCEEDED,
                **fields,
            )
    except IntegrityError:
        if idempotency_key is None:
            raise
    existing = Charge.objects.using(using).get(idempotency_key=idempotency_key)
    if (existing.amount, existing.currency, existing.source) != (amount, currency, source):
        raise GatewayKeyReused()
    return existing
