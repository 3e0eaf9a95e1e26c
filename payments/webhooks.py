"""The gateway's ``charge.succeeded`` webhook: processed once, however often it is delivered.

Gateways deliver webhooks at least once: after a timeout, a 5xx or a lost acknowledgement they
send the same event again, sometimes while the first delivery is still being processed. The
event's ``id`` is its idempotency key: :func:`idempotency.operations.run_once` runs the handler
for the first delivery, stores its result with the handler's writes, and answers every later
delivery with that result. A delivery that arrives while another is processing gets 409 with
``Retry-After`` (the gateway delivers it again later); a handler that fails frees the event for
the next delivery.

Here the handler emails the customer a receipt. The email goes out when the stored result
commits (``transaction.on_commit``), so a delivery whose transaction rolls back sends nothing.

Events are signed like the gateways' (``X-Gateway-Signature: sha256=<hex HMAC of the body>``),
with a key derived from ``SECRET_KEY``: :func:`sign` is what the gateway would run.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from rest_framework import status

from idempotency.exceptions import ProblemDetailsError, problem_response
from idempotency.operations import run_once
from payments.models import Payment

SIGNATURE_HEADER = "X-Gateway-Signature"
WEBHOOK_SCOPE = "webhooks:gateway"
CHARGE_SUCCEEDED = "charge.succeeded"


class InvalidSignature(ProblemDetailsError):
    status_code = status.HTTP_401_UNAUTHORIZED
    problem_type = "webhook-signature-invalid"
    title = _("Webhook signature invalid")
    default_detail = _("The X-Gateway-Signature header does not match the body.")
    default_code = "webhook_signature_invalid"


class MalformedEvent(ProblemDetailsError):
    status_code = status.HTTP_400_BAD_REQUEST
    problem_type = "webhook-event-malformed"
    title = _("Webhook event malformed")
    default_detail = _("The body must be a JSON event with an id, a type and data.")
    default_code = "webhook_event_malformed"


class UnknownCharge(ProblemDetailsError):
    """No payment records the charge (yet): the key is freed and the gateway delivers again."""

    status_code = status.HTTP_404_NOT_FOUND
    problem_type = "webhook-charge-unknown"
    title = _("Unknown charge")
    default_detail = _("No payment records this charge.")
    default_code = "webhook_charge_unknown"


def sign(body: bytes) -> str:
    """The signature header value for ``body``."""
    return "sha256=" + salted_hmac("gateway-webhook", body, algorithm="sha256").hexdigest()


@csrf_exempt  # authenticated by its signature, not by a session
@require_POST
def gateway_webhook(request: HttpRequest) -> HttpResponse:
    try:
        if not signature_matches(request.headers.get(SIGNATURE_HEADER, ""), request.body):
            raise InvalidSignature()
        event = parse_event(request.body)
        if event["type"] != CHARGE_SUCCEEDED:
            return JsonResponse({"ignored": event["type"]})
        result = run_once(
            lambda: charge_succeeded(event["data"]),
            scope=WEBHOOK_SCOPE,
            key=event["id"],
            fingerprint=event,
        )
    except ProblemDetailsError as error:
        # IdempotencyKeyInUse (409, Retry-After), IdempotencyKeyReused (422), ... or ours.
        return problem_response(error)
    return JsonResponse(result)


def signature_matches(received: str, body: bytes) -> bool:
    """Compared as bytes: ``compare_digest`` raises TypeError on a str with non-ASCII
    characters, and a forged header must be a 401, never a 500."""
    return hmac.compare_digest(received.encode(), sign(body).encode())


def parse_event(body: bytes) -> dict[str, Any]:
    try:
        event = json.loads(body)
    except ValueError:
        raise MalformedEvent() from None
    if not (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and isinstance(event.get("type"), str)
        and isinstance(event.get("data"), dict)
    ):
        raise MalformedEvent()
    return event


def charge_succeeded(data: dict[str, Any]) -> dict[str, Any]:
    """Runs once per event, inside the transaction that stores its result."""
    payment = (
        Payment.objects.select_related("customer").filter(charge_id=data.get("charge_id")).first()
    )
    if payment is None:
        raise UnknownCharge()
    recipient = payment.customer.email
    if recipient:
        transaction.on_commit(lambda: send_receipt(payment, recipient))
    return {"paymentId": payment.payment_id, "receiptTo": recipient or None}


def send_receipt(payment: Payment, recipient: str) -> None:
    send_mail(
        subject=gettext("Receipt for payment %(payment_id)s") % {"payment_id": payment.payment_id},
        message=gettext("We received %(amount)d %(currency)s (minor units). Thank you.")
        % {"amount": payment.amount, "currency": payment.currency},
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[recipient],
    )
