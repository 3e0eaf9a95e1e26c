"""Signals and structured log lines for what happens to each key.

Every signal is sent with ``sender`` (what protected the operation: the view class for
:class:`~idempotency.mixins.IdempotentMixin`, the view function for
:func:`~idempotency.decorators.idempotent`, :func:`~idempotency.operations.idempotent_operation`
for the guard) and the keyword arguments ``scope``, ``key`` and ``request`` (``None`` outside
HTTP), plus those listed beside each signal. Receivers are called with ``send_robust``: one that
raises is logged and never breaks the protocol (a key left reserved would block retries).

Each outcome is also logged to the ``idempotency`` logger, with ``idempotency_outcome``,
``idempotency_scope`` and ``idempotency_key`` in ``extra`` (never the stored body).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from django.dispatch import Signal
from django.http import HttpRequest

from idempotency.store import Decision, InProgress, Mismatch, Replay, Reserved

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger("idempotency")

#: The key was reserved for this attempt; ``taken_over`` is True when an expired lease was taken.
reserved = Signal()
#: A stored outcome was replayed; ``status`` is its status code.
replayed = Signal()
#: Another attempt holds the key; ``retry_after`` (a timedelta) is its lease's remaining time.
conflict = Signal()
#: The key was first used for another request; ``method`` and ``path`` name that first use.
mismatch = Signal()
#: The outcome was stored (sent once its transaction committed); ``status`` is its status code.
completed = Signal()
#: The key was freed for a retry (the operation failed, or its outcome is not final).
released = Signal()

OUTCOMES: dict[str, Signal] = {
    "reserved": reserved,
    "replayed": replayed,
    "conflict": conflict,
    "mismatch": mismatch,
    "completed": completed,
    "released": released,
}


# Slotted, not frozen: built for every key, and a frozen dataclass pays a call per field.
@dataclass(eq=False, slots=True)
class KeyEvents:
    """Announces the outcomes of one key to receivers and to the log."""

    sender: Any
    scope: str
    key: str
    request: HttpRequest | None = None

    def decided(self, decision: Decision) -> None:
        if isinstance(decision, Reserved):
            self.announce("reserved", taken_over=decision.taken_over)
        elif isinstance(decision, Replay):
            self.announce("replayed", status=decision.response.status)
        elif isinstance(decision, InProgress):
            self.announce("conflict", retry_after=decision.retry_after)
        elif isinstance(decision, Mismatch):
            self.announce(
                "mismatch", level=logging.WARNING, method=decision.method, path=decision.path
            )

    def completed(self, status: int, connection: BaseDatabaseWrapper) -> None:
        """Announce once the transaction that stored the outcome commits on ``connection``, the
        store's (at once if none is open)."""
        connection.on_commit(partial(self.announce, "completed", status=status))

    def released(self) -> None:
        self.announce("released")

    def announce(self, outcome: str, *, level: int = logging.INFO, **details: Any) -> None:
        signal = OUTCOMES[outcome]
        if signal.receivers:  # nothing connected: no arguments to build, nothing to send
            results = signal.send_robust(
                self.sender, scope=self.scope, key=self.key, request=self.request, **details
            )
            for receiver, result in results:
                if isinstance(result, Exception):
                    logger.error(
                        "idempotency: receiver %r of %r failed",
                        receiver,
                        outcome,
                        exc_info=result,
                        extra=self._extra(outcome, {}),
                    )
        if not logger.isEnabledFor(level):
            return  # no record to build: the level is off for this logger
        logger.log(
            level,
            "idempotency: %s scope=%s key=%s",
            outcome,
            self.scope,
            self.key,
            extra=self._extra(outcome, details),
        )

    def _extra(self, outcome: str, details: dict[str, Any]) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "idempotency_outcome": outcome,
            "idempotency_scope": self.scope,
            "idempotency_key": self.key,
        }
        for name, value in details.items():
            if isinstance(value, timedelta):
                value = value.total_seconds()
            extra[f"idempotency_{name}"] = value
        return extra
