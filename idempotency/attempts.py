"""One attempt at a keyed operation: the protocol the mixin, the decorator and run_once share.

:func:`begin` reserves the key and turns the store's decision into a stored outcome to replay,
a problem to answer (409, 422), or an :class:`Attempt` that holds the key. The attempt then
completes the key (fenced by its lease token, in the operation's transaction) or releases it,
and announces each outcome through :mod:`idempotency.signals`.
"""

from __future__ import annotations

import inspect
import logging
import math
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache, partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    connections,
    transaction,
)
from django.db.transaction import TransactionManagementError
from django.http import HttpRequest

from idempotency.conf import idempotency_settings
from idempotency.exceptions import (
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    IdempotencyLeaseLost,
    StorageUnavailable,
    TransactionAborted,
)
from idempotency.fingerprint_check import checked_fingerprint
from idempotency.signals import KeyEvents
from idempotency.store import (
    CommittedThenRaised,
    Decision,
    InProgress,
    LeaseLostError,
    Mismatch,
    RecordStore,
    Replay,
    Reserved,
    StoredResponse,
)
from idempotency.waiting import wait_for_holder

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger("idempotency")

# Raised by the store or the operation, these mean the database failed (connection lost,
# failover, deadlock, timeout): the transaction rolled back, so the client may retry (503).
STORAGE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


class Transaction:
    """The operation's transaction, as :meth:`Attempt.transaction` opens it (``with``)."""

    def __init__(self, attempt: Attempt) -> None:
        self.attempt = attempt
        self.completed = False
        self.committed = False
        self.aborted = False
        self.status = 0
        self._atomic: AbstractContextManager[None] | None = None
        self._connection: BaseDatabaseWrapper | None = None  # the store's, in this thread
        self._outcome: StoredResponse | None = None

    def complete(self, outcome: StoredResponse) -> None:
        """Store ``outcome`` as the final one, with the operation's writes, as the block ends.

        The completion is the transaction's last statement, so the block raises
        :class:`~idempotency.store.LeaseLostError` when the lease was lost; an error raised in
        the block after this call rolls everything back and stores nothing, as before it.
        """
        self.status = outcome.status
        self._outcome = outcome

    def _store_outcome(self, outcome: StoredResponse) -> None:
        connection = self._connection
        assert connection is not None
        blocks = connection.atomic_blocks
        # This block is the connection's whole transaction and commits as it ends: the
        # completion may commit it in its own round trip (Django's commit then has nothing to do).
        whole = (
            len(blocks) == 1
            and blocks[0] is self._atomic
            and connection.commit_on_exit
            and not connection.savepoint_ids
        )
        try:
            self.attempt.complete(outcome, commit=whole, connection=connection)
        except TransactionAborted:
            self.aborted = True
            raise
        except CommittedThenRaised:
            self.completed = True
            raise
        self.completed = True

    def discard(self) -> None:
        """Roll the operation's writes back: the outcome is not final."""
        self._outcome = None
        transaction.set_rollback(True, using=self.attempt.store.using)

    def _mark_committed(self) -> None:
        self.committed = True
        self.attempt.stored = self.completed

    # A class, not a generator context manager: every new key opens one.
    def __enter__(self) -> Transaction:
        store = self.attempt.store
        atomic = self._atomic = store.atomic()
        atomic.__enter__()
        try:
            connection = self._connection = transaction.get_connection(store.using)
            # Registered first, so it runs before any callback the operation registers.
            connection.on_commit(self._mark_committed)
        except BaseException:
            atomic.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._atomic is not None
        raised_after_commit: BaseException | None = None
        if kind is None and self._outcome is not None:
            try:
                self._store_outcome(self._outcome)
            except CommittedThenRaised as committed:
                # The outcome is stored: end as a commit does (callbacks, announcement) first.
                raised_after_commit = committed.error
            except BaseException as failure:
                self._atomic.__exit__(type(failure), failure, failure.__traceback__)
                if isinstance(failure, Exception):
                    self._log_aborted()
                raise
        try:
            self._atomic.__exit__(kind, error, traceback)  # commits, or rolls the error back
        except Exception:
            self._log_aborted()
            if not (self.committed and self.completed):
                raise
            # Raised by an on_commit callback, after the commit.
            self._log_raised_after_commit("an on_commit callback")
            # Django ran no callback after the one that raised: ours, registered last, included.
            self.attempt.events.announce("completed", status=self.status)
            self._after_commit(raised_after_commit)
            return
        if raised_after_commit is not None:
            self._after_commit(raised_after_commit)
            return
        if isinstance(error, Exception):
            self._log_aborted()  # and the error goes on: nothing was committed

    def _after_commit(self, raised: BaseException | None) -> None:
        """What the completion's statement raised after its COMMIT: logged; an interrupt goes on."""
        if raised is None:
            return
        if not isinstance(raised, Exception):
            raise raised
        self._log_raised_after_commit("the completion's statement", raised)

    def _log_raised_after_commit(self, where: str, error: BaseException | None = None) -> None:
        events = self.attempt.events
        logger.error(
            "idempotency: %s raised after the outcome was stored (scope=%s key=%s); the stored "
            "outcome stands and retries receive it",
            where,
            events.scope,
            events.key,
            exc_info=error or True,
        )

    def _log_aborted(self) -> None:
        if self.aborted:
            # Logged once rolled back: a log handler never runs while the transaction still
            # holds the operation's row locks.
            logger.error(
                "idempotency: the operation caught a database error inside its transaction "
                "without a savepoint, so its writes and its outcome (status %s) cannot be "
                "stored; nothing was kept. Wrap the statement that may fail in its own "
                "transaction.atomic() block (a savepoint) and catch the error outside it.",
                self.status,
            )


class _Holding:
    """:meth:`Attempt.holding`, as a class: every new key enters one."""

    __slots__ = ("attempt",)

    def __init__(self, attempt: Attempt) -> None:
        self.attempt = attempt

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        attempt = self.attempt
        if error is None:
            return False
        if isinstance(error, LeaseLostError):
            if error.reservation != attempt.reservation:
                attempt.release()  # a nested key's lease was lost: ours is still held
                return False
            logger.warning("idempotency: lease lost, outcome discarded")
            raise IdempotencyLeaseLost(key_holder=attempt) from None
        if isinstance(error, IdempotencyLeaseLost):
            if error.key_holder is not attempt:
                attempt.release()  # a nested key's lease was lost: ours is still held
            # else release() found the key taken over: nothing left to free
            return False
        if isinstance(error, Exception):
            attempt.release()  # raises IdempotencyLeaseLost, chained to this error, if taken over
            return False
        if attempt.stored:
            return False  # raised after the outcome was committed: it stands
        # KeyboardInterrupt, SystemExit: free the key, but never replace the signal.
        with suppress(IdempotencyLeaseLost):
            attempt.release()
        return False


@dataclass(eq=False)
class Attempt:
    """This attempt holds the key: run the operation inside :meth:`holding`."""

    store: RecordStore
    reservation: Reserved
    events: KeyEvents
    # Its outcome is committed: nothing raised after that (an interrupt) frees the key.
    stored: bool = field(default=False, init=False)

    def holding(self) -> AbstractContextManager[None]:
        """Around the operation: a lost lease answers 409 lease-lost, any error frees the key.

        An error in an attempt that was taken over also answers 409 lease-lost: the key's
        outcome is the other attempt's now, and a retry receives it.
        """
        return _Holding(self)

    def transaction(self) -> Transaction:
        """The transaction that holds the operation's writes and, if final, its outcome.

        Call :meth:`Transaction.complete` or :meth:`Transaction.discard` before the block ends.
        An ``on_commit`` callback that raises after the commit cannot undo it: the outcome is
        stored, so the error is logged as what it is and the block ends normally
        (``Transaction.committed`` tells).
        """
        return Transaction(self)

    def complete(
        self,
        outcome: StoredResponse,
        *,
        commit: bool = False,
        connection: BaseDatabaseWrapper | None = None,
    ) -> None:
        """Store the final outcome; call it in the transaction that holds the operation's writes.

        Raises :class:`~idempotency.store.LeaseLostError` when another attempt took the key
        over, and :class:`TransactionAborted` when the operation left its transaction unusable
        (:meth:`transaction` logs it, once the transaction is rolled back). ``commit``: see
        :meth:`RecordStore.complete <idempotency.store.RecordStore.complete>`. ``connection``:
        the store's in this thread, if the caller holds it already (a lookup spared).
        """
        if connection is None:
            connection = transaction.get_connection(self.store.using)
        try:
            # Checked here, not left to Django's cursor: a connection the operation closed (it
            # sent request_finished, say) fails to open a cursor before the cursor's own check.
            if connection.needs_rollback:
                raise TransactionManagementError("the transaction is marked for rollback")
            if commit and _takes_commit(self.store.complete):
                self.store.complete(self.reservation, outcome, commit=True)
            else:  # a store of its own may override complete() without ``commit``
                self.store.complete(self.reservation, outcome)
        except DatabaseError as error:
            if not _in_failed_transaction(error):
                raise
            raise TransactionAborted() from error
        except CommittedThenRaised:
            self.events.completed(outcome.status, connection)  # stored: announced at the commit
            raise
        self.events.completed(outcome.status, connection)

    def release(self) -> None:
        """Free the key for a retry; raises :class:`IdempotencyLeaseLost` if it was taken over.

        A database failure is logged, not raised: the lease frees the key when it runs out.
        """
        try:
            released = self.store.release(self.reservation)
        except Exception:
            logger.exception("idempotency: could not release a key; its lease will free it")
            return
        if not released:
            logger.warning("idempotency: lease lost, outcome discarded")
            raise IdempotencyLeaseLost(key_holder=self)
        self.events.released()


def _takes_commit(complete: Callable[..., None]) -> bool:
    """Whether the store's ``complete`` (bound, as it will be called) accepts ``commit``."""
    function = getattr(complete, "__func__", complete)  # a class's method: one entry per class
    try:
        return _accepts_commit(function)
    except TypeError:  # unhashable
        return _accepts_commit.__wrapped__(function)


@lru_cache(maxsize=64)
def _accepts_commit(function: Callable[..., None]) -> bool:
    parameters = inspect.signature(function).parameters.values()
    return any(
        parameter.name == "commit" or parameter.kind is inspect.Parameter.VAR_KEYWORD
        for parameter in parameters
    )


def _in_failed_transaction(error: DatabaseError) -> bool:
    # PostgreSQL refuses every statement after an error the operation caught without a
    # savepoint (SQLSTATE 25P02); Django says so itself when the ORM marked the rollback.
    if isinstance(error, TransactionManagementError):
        return True
    return getattr(error.__cause__, "sqlstate", None) == "25P02"


def begin(
    store: RecordStore,
    *,
    sender: Any,
    request: HttpRequest | None,
    scope: str,
    key: str,
    fingerprint: str,
    method: str,
    path: str,
    lease: timedelta,
    expiry: timedelta,
    retry_after: timedelta | None = None,
    wait: timedelta | None = None,
    before_replay: Callable[[], None] | None = None,
) -> StoredResponse | Attempt:
    """Reserve ``key``: the stored outcome to replay, or the :class:`Attempt` now holding it.

    ``before_replay`` runs before a stored outcome is announced and returned (the mixin's
    permission re-check): what it raises refuses the replay, which is then never announced.

    Raises :class:`IdempotencyKeyInUse` (409) while another attempt holds the key, after
    waiting up to ``wait`` for its outcome (``WAIT``; :mod:`idempotency.waiting`), with a
    ``Retry-After`` of ``retry_after`` (``RETRY_AFTER``) bounded by the holder's lease; and
    :class:`IdempotencyKeyReused` (422) when the key was first used for another request.
    """

    fingerprint = checked_fingerprint(fingerprint)  # before anything is stored

    def reserve() -> Decision:
        return store.reserve(
            scope=scope,
            key=key,
            fingerprint=fingerprint,
            method=method,
            path=path,
            lease=lease,
            expiry=expiry,
        )

    decision = reserve()
    if isinstance(decision, InProgress):
        decision = wait_for_holder(
            decision,
            poll=partial(store.poll, scope=scope, key=key, fingerprint=fingerprint),
            reserve=reserve,
            wait=idempotency_settings.WAIT if wait is None else wait,
            max_waiters=idempotency_settings.MAX_WAITERS,
        )
    if isinstance(decision, Mismatch):
        # Records stored before paths were kept without their query: never reveal one (it may
        # hold a token) in the answer or the log.
        decision = Mismatch(decision.method, decision.path.partition("?")[0])
    if isinstance(decision, Replay) and before_replay is not None:
        before_replay()
    events = KeyEvents(sender, scope, key, request)
    events.decided(decision)
    if isinstance(decision, Replay):
        return decision.response
    if isinstance(decision, InProgress):
        hint = retry_hint(decision.retry_after, retry_after)
        if request is None:  # a consumer (run_once): speak of events, not of headers
            raise IdempotencyKeyInUse(
                hint,
                f"Another worker is processing event {key!r} in {scope!r}; deliver it again "
                f"in {max(1, math.ceil(hint.total_seconds()))} s.",
            )
        raise IdempotencyKeyInUse(hint)
    if isinstance(decision, Mismatch):
        if request is None:
            raise IdempotencyKeyReused(
                f"Event {key!r} in {scope!r} was already processed with a different "
                "payload; it is refused, never processed again."
            )
        raise IdempotencyKeyReused(
            f"This idempotency key was already used for {decision.method} {decision.path} "
            "with a different request. Use a new key for a new operation."
        )
    return Attempt(store, decision, events)


def retry_hint(lease_left: timedelta, hint: timedelta | None = None) -> timedelta:
    """When a duplicate should come back: the hint, never past the lease, never under 1 s."""
    hint = idempotency_settings.RETRY_AFTER if hint is None else hint
    return max(timedelta(seconds=1), min(hint, lease_left))


def unprotected_request_transaction(using: str) -> AbstractContextManager[Any]:
    """The transaction ATOMIC_REQUESTS would have wrapped an unprotected request in.

    Protected views are taken out of the request-wide transaction (the reservation must commit
    on its own); requests they do not protect get it back here.
    """
    if transaction.get_connection(using).settings_dict.get("ATOMIC_REQUESTS"):
        return transaction.atomic(using=using)
    return nullcontext()


def storage_unavailable(exc: Exception) -> StorageUnavailable:
    """The 503 problem for a database failure, after dropping broken connections.

    Dropping them now lets the retry reconnect, as Django's request cycle would at its next
    request (not every caller runs one: a test client, a consumer loop).
    """
    logger.warning("idempotency: the database failed; answered 503", exc_info=exc)
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()
    return StorageUnavailable()
