"""Errors the library answers with, rendered as RFC 9457 problem details."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.http import HttpResponse
from django.utils.translation import gettext_lazy as _
from rest_framework import status
from rest_framework.exceptions import APIException

from idempotency.conf import idempotency_settings

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise

PROBLEM_CONTENT_TYPE = "application/problem+json"


class ProblemDetailsError(APIException):
    """An API error answered as ``application/problem+json``.

    ``problem_type`` is appended to ``IDEMPOTENCY["PROBLEM_TYPE_BASE"]`` to form the stable
    ``type`` URI; ``default_code`` stays DRF's machine-readable code. Subclass it for errors of
    your own that should share the format.
    """

    problem_type: str = "error"
    title: _StrOrPromise = "Error"
    headers: dict[str, str]

    def __init__(self, detail: str | None = None, code: str | None = None) -> None:
        super().__init__(detail, code)
        self.headers = {}

    def problem(self) -> dict[str, Any]:
        return {
            "type": f"{idempotency_settings.PROBLEM_TYPE_BASE}{self.problem_type}",
            "title": str(self.title),
            "status": self.status_code,
            "detail": str(self.detail),
            "code": self.default_code,
        }


def problem_response(error: ProblemDetailsError) -> HttpResponse:
    """Render ``error`` as RFC 9457 JSON, whatever renderer the view negotiated."""
    response = HttpResponse(
        json.dumps(error.problem()),
        status=error.status_code,
        content_type=PROBLEM_CONTENT_TYPE,
    )
    for name, value in error.headers.items():
        response[name] = value
    return response


class IdempotencyKeyMissing(ProblemDetailsError):
    status_code = status.HTTP_400_BAD_REQUEST
    problem_type = "key-missing"
    title = _("Idempotency key missing")
    default_detail = _("This operation requires an idempotency key header.")
    default_code = "idempotency_key_missing"

    def __init__(self, detail: str | None = None) -> None:
        # Name the header the client must send (the HEADER setting).
        header = idempotency_settings.HEADER
        super().__init__(
            detail
            or _("This operation requires an idempotency key in the %(header)s header.")
            % {"header": header}
        )


class IdempotencyKeyInvalid(ProblemDetailsError):
    status_code = status.HTTP_400_BAD_REQUEST
    problem_type = "key-invalid"
    title = _("Idempotency key invalid")
    default_detail = _("The idempotency key is not valid.")
    default_code = "idempotency_key_invalid"


class IdempotencyKeyInUse(ProblemDetailsError):
    """Another request holds the key; the client should retry after ``Retry-After``."""

    status_code = status.HTTP_409_CONFLICT
    problem_type = "request-in-progress"
    title = _("Request in progress")
    default_detail = _(
        "A request with this idempotency key is still being processed. "
        "Retry after the time given in Retry-After."
    )
    default_code = "idempotency_request_in_progress"

    def __init__(self, retry_after: timedelta, detail: str | None = None) -> None:
        seconds = max(1, math.ceil(retry_after.total_seconds()))
        super().__init__(
            detail
            or _(
                "A request with this idempotency key is still being processed. Retry in "
                "%(seconds)d s (Retry-After) with the same key to receive its outcome."
            )
            % {"seconds": seconds}
        )
        self.retry_after = seconds
        self.headers["Retry-After"] = str(seconds)

    def problem(self) -> dict[str, Any]:
        # Also in the body, for clients that read problems but not headers (RFC 9457 extension).
        return {**super().problem(), "retry_after": self.retry_after}


class IdempotencyLeaseLost(ProblemDetailsError):
    """This attempt's lease ran out and another attempt took the key over."""

    status_code = status.HTTP_409_CONFLICT
    problem_type = "lease-lost"
    title = _("Lease lost")
    default_detail = _(
        "This attempt took too long and another attempt with the same idempotency key took "
        "over; nothing from this attempt was stored. Retry to receive the stored outcome."
    )
    default_code = "idempotency_lease_lost"

    def __init__(self, detail: str | None = None, *, key_holder: object = None) -> None:
        super().__init__(detail)
        # The attempt whose lease was lost: an enclosing attempt (a nested guard) still holds
        # its own key and must free it.
        self.key_holder = key_holder
        self.headers["Retry-After"] = "1"


class IdempotencyKeyReused(ProblemDetailsError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    problem_type = "key-reused"
    title = _("Idempotency key reused")
    default_detail = _(
        "This idempotency key was already used for a different request. "
        "Use a new key for a new operation."
    )
    default_code = "idempotency_key_reused"


class StorageUnavailable(ProblemDetailsError):
    """The database failed during the request (connection lost, failover, deadlock, timeout).

    The operation's writes rolled back with its transaction, so a retry with the same key is
    safe: it runs the operation once, or replays the outcome if its commit did reach the database.
    """

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    problem_type = "storage-unavailable"
    title = _("Storage unavailable")
    default_detail = _(
        "The service lost its database during this request. Retry with the same idempotency "
        "key: the operation runs once, or its stored outcome is replayed."
    )
    default_code = "idempotency_storage_unavailable"
    retry_after = 1

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail)
        self.headers["Retry-After"] = str(self.retry_after)


class RequestBodyTooLarge(ProblemDetailsError):
    """The body is over ``settings.DATA_UPLOAD_MAX_MEMORY_SIZE``: refused before it is parsed."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    problem_type = "body-too-large"
    title = _("Request body too large")
    default_detail = _("The request body is larger than this service accepts.")
    default_code = "request_body_too_large"


class TransactionAborted(ProblemDetailsError):
    """The operation caught a database error inside its transaction without a savepoint.

    The database refuses every statement after such an error, so neither the operation's
    writes nor its outcome can be stored: they roll back, and the key is freed for a retry.
    """

    status_code = status.HTTP_500_INTERNAL_SERVER_ERROR
    problem_type = "transaction-aborted"
    title = _("Transaction aborted")
    default_detail = _(
        "The operation's database transaction failed, so nothing was stored. Retry with the "
        "same idempotency key."
    )
    default_code = "idempotency_transaction_aborted"


class ResponseNotStorable(ProblemDetailsError):
    """The operation's response cannot be stored for replay (too large, or async streaming).

    Telling the client "done" without a stored outcome would let a retry run it again, so the
    operation's writes roll back and the key is freed; the log says what to change.
    """

    status_code = status.HTTP_500_INTERNAL_SERVER_ERROR
    problem_type = "response-not-storable"
    title = _("Response not storable")
    default_detail = _(
        "The operation's response could not be stored for replay, so nothing was kept. "
        "Retry with the same idempotency key."
    )
    default_code = "idempotency_response_not_storable"


class RequestBodyInvalid(ProblemDetailsError):
    """The body cannot be fingerprinted: refused before anything is stored or run."""

    status_code = status.HTTP_400_BAD_REQUEST
    problem_type = "body-invalid"
    title = _("Request body invalid")
    default_detail = _(
        "The request body holds text that is not valid Unicode (a lone surrogate escape such "
        'as "\\udb9d") or is nested too deeply.'
    )
    default_code = "request_body_invalid"
