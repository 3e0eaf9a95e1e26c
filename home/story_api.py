"""The JSON endpoints the front page plays the retry story with (demo mode only).

- ``POST /demo/story/``: a new run, with a customer of its own, so its ledger is its own
  whatever else the demo is doing.
- ``GET /demo/story/<customerId>?key=<key>``: the run's gateway ledger, split by whether the shop
  sent the gateway a key, and the caller's idempotency record for ``key``.
- ``POST /demo/without-idempotency/payments``: ``POST /payments`` minus ``IdempotentMixin``, the
  "without" half of the story (what ``manage.py retry_story`` runs in process).
"""

from __future__ import annotations

import contextlib
import json
import secrets
from typing import Any

from django.shortcuts import get_object_or_404
from django.utils.translation import gettext
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from gateway.models import Charge
from gateway.serializers import ChargeSerializer
from home.demo_mode import DemoModeOnly
from idempotency.conf import idempotency_settings
from idempotency.models import IdempotencyRecord
from payments.models import Customer
from payments.views import PaymentOperations

RUN_CUSTOMER_PREFIX = "cust_live_"
# A stored body longer than this is cut: the page shows it, it does not archive it.
MAX_BODY_SHOWN = 2000


class StoryRuns(DemoModeOnly):
    schema = None  # demo plumbing, not part of the API the schema documents

    def post(self, request: Request) -> Response:
        customer = Customer.objects.create(
            customer_id=f"{RUN_CUSTOMER_PREFIX}{secrets.token_hex(4)}",
            name=gettext("Live story customer"),
        )
        return Response({"customerId": customer.customer_id}, status=status.HTTP_201_CREATED)


class StoryState(DemoModeOnly):
    schema = None

    def get(self, request: Request, customer_id: str) -> Response:
        customer = get_object_or_404(
            Customer, customer_id=customer_id, customer_id__startswith=RUN_CUSTOMER_PREFIX
        )
        charges = Charge.objects.filter(source=customer.customer_id).order_by("created_at", "id")
        key = request.query_params.get("key", "")
        return Response(
            {
                "customerId": customer.customer_id,
                "ledger": {
                    # Without a key of ours the shop sends the gateway none either.
                    "without": ChargeSerializer(
                        charges.filter(idempotency_key__isnull=True), many=True
                    ).data,
                    "with": ChargeSerializer(
                        charges.filter(idempotency_key__isnull=False), many=True
                    ).data,
                },
                "record": record_of(request, key) if key else None,
            }
        )


def record_of(request: Request, key: str) -> dict[str, Any] | None:
    """The caller's record for ``key``, as the admin would show it, or ``None``."""
    scope = idempotency_settings.SCOPE_FUNCTION(request)
    record = IdempotencyRecord.objects.filter(scope=scope, key=key).first()
    if record is None:
        return None
    return {
        "scope": record.scope,
        "key": record.key,
        "state": record.state,
        "request": f"{record.method} {record.path}",
        "fingerprint": record.fingerprint,
        "responseStatus": record.response_status,
        "responseBody": _readable(bytes(record.response_body)),
        "createdAt": record.created_at,
        "completedAt": record.completed_at,
        "expiresAt": record.expires_at,
    }


def _readable(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace")
    with contextlib.suppress(ValueError):  # not JSON: shown as it is
        text = json.dumps(json.loads(text), indent=2)
    return text if len(text) <= MAX_BODY_SHOWN else text[:MAX_BODY_SHOWN] + "…"


class PaymentsWithoutIdempotency(DemoModeOnly, PaymentOperations):
    """``POST /payments`` as a server without idempotency runs it: every retry is a new charge."""

    schema = None
