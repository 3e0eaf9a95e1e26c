"""The opt-in bounded wait: a duplicate that finds its key in progress waits for the outcome.

The waiter polls the record with plain reads (one ``SELECT`` each, no transaction, no row lock)
on a capped exponential backoff with jitter, so a burst of duplicates costs the database a few
reads each. When the holder completes, the waiter answers with the stored outcome (replayed);
when the holder releases the key or dies, the waiter reserves it itself and runs the operation,
as the client's own retry would. A per-process cap on waiters keeps a burst from taking every
worker thread: past it, a duplicate gets the 409 at once.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from idempotency.store import Decision, InProgress

# The first poll comes soon (most operations are short), later ones less often.
FIRST_DELAY = 0.05
MAX_DELAY = 0.5


class _Waiters:
    """How many requests of this process are waiting now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def enter(self, limit: int) -> bool:
        with self._lock:
            if self.count >= limit:
                return False
            self.count += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.count -= 1


waiters = _Waiters()


def max_polls(budget: float) -> int:
    """The most reads one wait of ``budget`` seconds can make: every jittered sleep at its shortest.

    The bound on what a waiter costs the database (docs and tests quote it).
    """
    polls, delay, slept = 0, FIRST_DELAY, 0.0
    while slept < budget:
        slept += delay / 2
        polls += 1
        delay = min(delay * 2, MAX_DELAY)
    return polls


def wait_for_holder(
    first: InProgress,
    *,
    poll: Callable[[], Decision | None],
    reserve: Callable[[], Decision],
    wait: timedelta,
    max_waiters: int,
) -> Decision:
    """Wait up to ``wait`` for the holder; the decision then (still ``InProgress`` if none).

    ``poll`` is :meth:`RecordStore.poll` for the key, ``reserve`` its :meth:`RecordStore.reserve`.
    """
    if wait <= timedelta(0) or not waiters.enter(max_waiters):
        return first
    try:
        deadline = time.monotonic() + wait.total_seconds()
        delay = FIRST_DELAY
        decision: Decision = first
        while (remaining := deadline - time.monotonic()) > 0:
            # Full jitter keeps a burst of waiters from polling in lockstep.
            time.sleep(min(remaining, random.uniform(delay / 2, delay)))
            delay = min(delay * 2, MAX_DELAY)
            # None: released, expired or its holder died; the row lock decides, as for a retry.
            decision = poll() or reserve()
            if not isinstance(decision, InProgress):
                return decision
        return decision
    finally:
        waiters.leave()
