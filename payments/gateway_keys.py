"""The gateway's idempotency key, derived from the client's: the next hop of the same story."""

from __future__ import annotations

import hashlib
import json

# Namespaces keys by operation, so another call made with the same client key (a refund, say)
# never meets this one's charge at the gateway.
OPERATION = "payments.create"


def gateway_key(scope: str, key: str) -> str:
    """Same client key in the same scope -> same gateway key; anything else -> another key.

    A hash, not the key itself: the gateway never learns our users' ids or their raw keys,
    and JSON keeps the parts apart (no ``"a:b" + "c"`` == ``"a" + "b:c"``).
    """
    material = json.dumps([OPERATION, scope, key], separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()
