"""Failures on demand for the demo (``X-Demo-Fault``), honoured only when ``DEMO_FAULTS`` is on."""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum

from django.conf import settings
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers, status
from rest_framework.request import Request

from idempotency.exceptions import ProblemDetailsError

FAULT_HEADER = "X-Demo-Fault"


class Fault(StrEnum):
    # Payments: the gateway charged, then the payment fails before it commits.
    CRASH_AFTER_CHARGE = "crash-after-charge"
    # Orders: stock reserved and order written, then the order fails before it commits.
    CRASH_BEFORE_COMMIT = "crash-before-commit"
    # Payments: the gateway takes about a second (widens race windows).
    SLOW = "slow"


class DemoCrash(ProblemDetailsError):
    """What a crash or a lost database connection looks like to the client: a 500."""

    status_code = status.HTTP_500_INTERNAL_SERVER_ERROR
    problem_type = "demo-crash"
    title = _("Simulated crash")
    default_detail = _(
        "The server failed on purpose (X-Demo-Fault) before the operation committed. "
        "Retry with the same idempotency key."
    )
    default_code = "demo_crash"


def requested_fault(request: Request, allowed: Collection[Fault]) -> Fault | None:
    """The fault this request asks for, or ``None``; the header is ignored unless enabled."""
    if not getattr(settings, "DEMO_FAULTS", False):
        return None
    raw = request.headers.get(FAULT_HEADER)
    if raw is None:
        return None
    for fault in allowed:
        if raw.strip() == fault.value:
            return fault
    choices = ", ".join(fault.value for fault in allowed)
    # A validation error: the request changed nothing and its idempotency key stays free.
    message = gettext("Unknown fault %(raw)r; this endpoint knows: %(choices)s.")
    raise serializers.ValidationError({FAULT_HEADER: [message % {"raw": raw, "choices": choices}]})
