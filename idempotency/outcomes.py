"""Which outcomes are final: stored and replayed, or the key released for another attempt.

One rule for the mixin, ``@idempotent`` and ``run_once``, so every entry point agrees.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from rest_framework.exceptions import (
    AuthenticationFailed,
    NotAuthenticated,
    ParseError,
    PermissionDenied,
    Throttled,
    UnsupportedMediaType,
    ValidationError,
)

from idempotency.exceptions import (
    IdempotencyKeyInUse,
    IdempotencyLeaseLost,
    StorageUnavailable,
)

# Raised inside the operation, these refuse the request as sent or say "not now": the outcome is
# not final, so the key is released (and the operation's writes roll back) for the corrected or
# later request to use, as Stripe does for requests that fail validation or conflict.
RELEASING_EXCEPTIONS: tuple[type[Exception], ...] = (
    # The input was refused: the corrected request may use the key.
    ValidationError,
    ParseError,
    UnsupportedMediaType,
    # Access was refused: a retry must be judged by who asks then, never replayed a refusal.
    NotAuthenticated,
    AuthenticationFailed,
    PermissionDenied,
    DjangoPermissionDenied,
    # Not now: rate limits and our own transient problems (a nested key in use, a lease lost,
    # the database lost) pass; storing them would freeze a temporary answer until expiry.
    Throttled,
    IdempotencyKeyInUse,
    IdempotencyLeaseLost,
    StorageUnavailable,
)

# Answered (returned, not raised) with these statuses, an outcome is as transient as the
# exceptions above: authentication, permission, timeout, "too early" and rate limits.
TRANSIENT_STATUSES = frozenset({401, 403, 408, 425, 429})


def is_final(status: int, exception: BaseException | None = None) -> bool:
    """Whether an outcome is the key's answer for good (stored, replayed) or the key is freed.

    The one rule every entry point follows: 2xx, 3xx and 4xx outcomes are final, except
    refusals of the input, of access or of the moment (:data:`RELEASING_EXCEPTIONS`,
    :data:`TRANSIENT_STATUSES`); 5xx never is.
    """
    if isinstance(exception, RELEASING_EXCEPTIONS):
        return False
    return status < 500 and status not in TRANSIENT_STATUSES
