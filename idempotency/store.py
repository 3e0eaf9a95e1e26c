"""The record store: reserve a key, then complete, release or replay it.

Every decision about a key is taken on its row: the reservation is an INSERT under the
unique constraint (never check-then-insert) and an existing row is read with
``SELECT ... FOR UPDATE`` before anything is decided about it.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
    connections,
    router,
    transaction,
)
from django.db.models import QuerySet
from django.utils import timezone

from idempotency import reserve_function
from idempotency.dbclock import DatabaseNow, database_now
from idempotency.models import IdempotencyRecord
from idempotency.rows import record_from_row, record_from_values
from idempotency.statements import (
    IN_STATEMENT,
    NOW,
    FromNow,
    committing,
    lease_lost_in_database,
    record_statements,
)

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

Clock = Callable[[], datetime]
T = TypeVar("T")
State = IdempotencyRecord.State


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class Reserved:
    """This attempt holds the key: run the operation, then complete or release."""

    record_id: int
    token: uuid.UUID
    # How long the outcome is replayed, counted from the completion.
    expiry: timedelta
    # The key's row is reached through these (the lock order: see idempotency.statements).
    scope: str
    key: str
    taken_over: bool = False


@dataclass(frozen=True)
class Replay:
    """The operation already completed: answer with its stored outcome."""

    response: StoredResponse


@dataclass(frozen=True)
class InProgress:
    """Another attempt holds the key for ``retry_after`` more."""

    retry_after: timedelta


@dataclass(frozen=True)
class Mismatch:
    """The key was first used for another request."""

    method: str
    path: str


Decision = Reserved | Replay | InProgress | Mismatch


@dataclass(frozen=True)
class Taken:
    """The reservation collided: the key's row as it read it back (``read``; None if the row
    was gone), or not read yet."""

    record: IdempotencyRecord | None
    read: bool


_UNREAD = Taken(None, read=False)


class LeaseLostError(Exception):
    """The reservation's token is no longer current: another attempt took the key over."""

    def __init__(self, reservation: Reserved) -> None:
        super().__init__(reservation)
        self.reservation = reservation


class CommittedThenRaised(Exception):
    """The completion committed the outcome, then ``error`` was raised (by an execute wrapper,
    an interrupt): the outcome is stored and final all the same."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


class _Returned:
    """An execute wrapper that notes whether the statement returned."""

    __slots__ = ("ran",)

    def __init__(self) -> None:
        self.ran = False

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        result = execute(sql, params, many, context)
        self.ran = True
        return result


class RecordStore:
    """Database-backed key store on the database's clock (idempotency.dbclock).

    ``clock`` is injectable so tests can move time: with one, every time is the clock's.
    """

    # How often reserve() retries when the row it collided with vanished before it could be
    # read (released or purged in between): one more INSERT then wins or finds the new row.
    max_attempts = 3
    # How often a statement or decision that InnoDB rolled back as a deadlock victim (and that
    # was no part of a caller's transaction) is run again.
    deadlock_attempts = 10

    def __init__(self, clock: Clock | None = None, using: str | None = None) -> None:
        # None: the database's clock (the app server's where the database has none here).
        self.clock = clock
        # Without routers the router answers the default alias (most projects; one per request).
        self.using = using or (
            router.db_for_write(IdempotencyRecord) if router.routers else DEFAULT_DB_ALIAS
        )

    def _on_database_clock(self) -> bool:
        return self.clock is None and record_statements(self.using).clock is not None

    def _wall_zone(self) -> tzinfo | None:
        """The zone whose wall times the decision's naive times (``USE_TZ`` off) are, and whose
        labels its aware ones carry truly, so that they compare as instants; None: they compare
        as they are. PostgreSQL's driver gives a ``timestamptz`` in the session's zone (Django's
        default zone), as the app's clock does; the database clocks of MySQL and SQLite read and
        write UTC wall times whatever the settings say (``DATABASES[...]["TIME_ZONE"]`` only
        relabels them), which compare right as they are."""
        if self._on_database_clock() and connections[self.using].vendor != "postgresql":
            return None
        return timezone.get_default_timezone()

    def _app_now(self) -> datetime:
        return self.clock() if self.clock is not None else timezone.now()

    def _read(self, scope: str, key: str, *, lock: bool = False) -> IdempotencyRecord | None:
        """The key's row; on the database's clock with that clock's now as ``db_now``, read by
        the same statement (no extra round trip). Unlocked, by a statement written once (see
        idempotency.statements); locked, by the ORM, whose record the decision may then save."""
        if not lock:
            return self._read_plain(scope, key)
        records = self._records().select_for_update()
        if self._on_database_clock():
            records = records.annotate(db_now=DatabaseNow())
        return records.filter(scope=scope, key=key).first()

    def _read_plain(self, scope: str, key: str) -> IdempotencyRecord | None:
        connection = connections[self.using]
        sql = record_statements(self.using).read[self._on_database_clock()]
        with connection.cursor() as cursor:
            cursor.execute(sql, [scope, key])
            row = cursor.fetchone()
        return None if row is None else record_from_row(connection, self.using, scope, key, row)

    def _now_of(self, record: IdempotencyRecord, fallback: datetime | None) -> datetime:
        now = getattr(record, "db_now", None) or fallback
        return now if now is not None else self._app_now()

    def atomic(self) -> AbstractContextManager[None]:
        """The store's transaction (a key's decision, an operation and its outcome): see
        :func:`write_transaction`."""
        return write_transaction(self.using)

    def reserve(
        self,
        *,
        scope: str,
        key: str,
        fingerprint: str,
        method: str,
        path: str,
        lease: timedelta,
        expiry: timedelta,
    ) -> Decision:
        for _attempt in range(self.max_attempts):
            # On the database's clock the INSERT computes its times, and each read below
            # brings the database's now with the row.
            now = None if self._on_database_clock() else self._app_now()
            token = uuid.uuid4()
            claim = self._insert(scope, key, fingerprint, method, path, now, token, lease, expiry)
            if isinstance(claim, int):
                return Reserved(claim, token, expiry, scope, key)
            # A completed record is final until it expires: replaying it needs no lock, and
            # concurrent retries of a finished operation never queue behind each other. A live
            # holder's key, too, is decided without a lock: neither decision writes.
            existing = claim.record if claim.read else self._read(scope, key)
            if existing is not None:
                seen = self._now_of(existing, now)
                if _final_or_held(existing, seen, self._wall_zone()):
                    return self._decide(
                        existing, seen, token, fingerprint, method, path, lease, expiry
                    )
            decision = self._decide_under_lock(
                scope, key, now, token, fingerprint, method, path, lease, expiry
            )
            if decision is None:
                continue  # released or purged since the INSERT collided: try again
            return decision
        # The key churned under every attempt (reserved and released again between two of our
        # statements): another attempt is at work on it, so this one is answered as "in
        # progress" and comes back after the retry hint, rather than failing with a 500; the
        # attempt now holding it may keep it for up to a lease.
        return InProgress(lease)

    def _decide_under_lock(
        self,
        scope: str,
        key: str,
        now: datetime | None,
        token: uuid.UUID,
        fingerprint: str,
        method: str,
        path: str,
        lease: timedelta,
        expiry: timedelta,
    ) -> Decision | None:
        """Decide on the key's row under ``SELECT ... FOR UPDATE``; None if it is gone."""

        def decide() -> Decision | None:
            with self.atomic():
                existing = self._read(scope, key, lock=True)
                if existing is None:
                    return None
                seen = self._now_of(existing, now)
                return self._decide(existing, seen, token, fingerprint, method, path, lease, expiry)

        # InnoDB may still pick this short transaction as a deadlock victim against an INSERT of
        # the same key (the gap locks of its duplicate check, see _insert).
        return self._again_if_deadlocked(decide)

    def _again_if_deadlocked(self, step: Callable[[], T]) -> T:
        """Run ``step`` again when InnoDB rolled it back as a deadlock victim (1213).

        Only a step of the store's own (an autocommitted statement, a short transaction): it
        held nothing else and was rolled back whole. Never inside a caller's transaction, which
        the deadlock rolled back too.
        """
        connection = connections[self.using]
        outermost = not connection.in_atomic_block
        for attempt in range(1, self.deadlock_attempts + 1):
            try:
                return step()
            except OperationalError as error:
                if attempt == self.deadlock_attempts or not _deadlock_victim(
                    connection, error, outermost
                ):
                    raise
                _back_off(attempt)
        raise AssertionError("unreachable")

    def poll(self, *, scope: str, key: str, fingerprint: str) -> Decision | None:
        """What a waiting duplicate sees now, from one plain read (no lock, no transaction).

        ``None`` when only :meth:`reserve` can decide: the row is gone (released, purged), its
        holder's lease ran out, or it expired.
        """
        record = self._read(scope, key)
        if record is None:
            return None
        zone = self._wall_zone()
        now = _instant(self._now_of(record, None), zone)
        if record.state == State.IN_PROGRESS:
            held_until = record.locked_until
            if held_until is None or _instant(held_until, zone) <= now:
                return None
            if record.fingerprint != fingerprint:
                return Mismatch(record.method, record.path)
            return InProgress(_instant(held_until, zone) - now)
        if _instant(record.expires_at, zone) <= now:
            return None
        if record.fingerprint != fingerprint:
            return Mismatch(record.method, record.path)
        return Replay(_stored_response(record))

    def _records(self) -> QuerySet[IdempotencyRecord]:
        return IdempotencyRecord.objects.using(self.using)

    def _insert(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        method: str,
        path: str,
        now: datetime | None,
        token: uuid.UUID,
        lease: timedelta,
        expiry: timedelta,
    ) -> int | Taken:
        """INSERT the reservation and return its id; :class:`Taken` if the key exists.

        Outside a transaction it is one autocommitted statement: the reservation is visible to
        every other worker as soon as it returns. ``now`` None: the database's clock. On
        PostgreSQL one function call both reserves and reads a taken key's row back.
        """
        connection = connections[self.using]
        if reserve_function.available(connection):
            call = reserve_function.call(
                clock_given=now is not None,
                lease=lease,
                keep=max(lease, expiry),
            )
            arguments: list[Any] = [scope, key, fingerprint, method, path, token]
            if now is not None:
                arguments.append(now)
            try:
                return self._reserve_or_read(connection, call, scope, key, arguments)
            except ProgrammingError as error:
                # Dropped since it was found: only outside a transaction, which the error
                # did not break, do the two statements stand in for it at once.
                if not reserve_function.missing(connection, error) or connection.in_atomic_block:
                    raise
        statements = record_statements(self.using)
        if statements.insert is None and now is None:
            now = database_now(self.using)  # the ORM's INSERT takes values, not expressions
        times: dict[str, Any] = (
            {
                "locked_until": FromNow(lease),
                "created_at": NOW,
                "expires_at": FromNow(max(lease, expiry)),
            }
            if now is None
            else {
                "locked_until": now + lease,
                "created_at": now,
                "expires_at": now + max(lease, expiry),
            }
        )
        values = {
            "scope": scope,
            "key": key,
            "fingerprint": fingerprint,
            "method": method,
            "path": path,
            "state": State.IN_PROGRESS,
            "response_headers": [],
            "response_body": b"",
            "lease_token": token,
            **times,
        }
        if statements.insert is None:
            return self._insert_with_orm(values)
        params = statements.insert_params(connection, values)
        sql = statements.insert if now is not None else statements.insert_on_db_clock
        assert sql is not None

        def insert() -> int | None:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                if not statements.insert_returns_id:
                    return int(cursor.lastrowid) if cursor.rowcount == 1 else None
                row = cursor.fetchone()
            return None if row is None else int(row[0])

        # InnoDB's duplicate check locks the gap beside a key's delete-marked entries (a
        # released key's old row, until InnoDB purges it), so two INSERTs of one new key can
        # deadlock each other: the autocommitted statement is simply issued again.
        record_id = self._again_if_deadlocked(insert)
        return _UNREAD if record_id is None else record_id

    def _reserve_or_read(
        self,
        connection: BaseDatabaseWrapper,
        call: str,
        scope: str,
        key: str,
        arguments: list[Any],
    ) -> int | Taken:
        """The reservation by PostgreSQL's function (migration 0005): the new id, or the taken
        key's row as the read after a collision returns it."""
        with connection.cursor() as cursor:
            cursor.execute(call, arguments)
            row = cursor.fetchone()
        record_id, taken = row
        if taken is None:
            # A new key's id; none: taken, then released or purged before the function read it.
            return Taken(None, read=True) if record_id is None else int(record_id)
        values = reserve_function.taken_values(connection, taken)
        return Taken(record_from_values(self.using, scope, key, [record_id, *values]), read=True)

    def _insert_with_orm(self, values: dict[str, Any]) -> int | Taken:
        record = IdempotencyRecord(**values)
        try:
            if transaction.get_connection(self.using).in_atomic_block:
                # Inside a caller's transaction a savepoint keeps a collision from breaking it.
                with self.atomic():
                    record.save(using=self.using, force_insert=True)
            else:
                record.save(using=self.using, force_insert=True)
        except IntegrityError:
            return _UNREAD
        assert record.pk is not None
        return int(record.pk)

    def _decide(
        self,
        record: IdempotencyRecord,
        now: datetime,
        token: uuid.UUID,
        fingerprint: str,
        method: str,
        path: str,
        lease: timedelta,
        expiry: timedelta,
    ) -> Decision:
        in_progress = record.state == State.IN_PROGRESS
        zone = self._wall_zone()
        instant = _instant(now, zone)
        held_until = None if record.locked_until is None else _instant(record.locked_until, zone)
        if in_progress and held_until is not None and held_until > instant:
            # A live holder keeps its key whatever the expiry says (a record written before
            # leases extended the expiry may have a shorter one).
            if record.fingerprint != fingerprint:
                return Mismatch(record.method, record.path)
            return InProgress(held_until - instant)
        if _instant(record.expires_at, zone) <= instant:
            # An expired key is a new key: the row is reused for the new operation. A holder
            # whose lease ran out may still be running: the new token fences it out.
            record.fingerprint, record.method, record.path = fingerprint, method, path
            record.state = State.IN_PROGRESS
            record.response_status, record.response_headers, record.response_body = None, [], b""
            record.created_at, record.completed_at = now, None
            return self._lease(record, now, token, lease, expiry, taken_over=in_progress)
        if record.fingerprint != fingerprint:
            return Mismatch(record.method, record.path)
        if not in_progress:
            return Replay(_stored_response(record))
        # The holder's lease ran out (it died or hangs): this attempt takes the key over. The
        # new token fences the old holder out: its completion will match no row.
        return self._lease(record, now, token, lease, expiry, taken_over=True)

    def _lease(
        self,
        record: IdempotencyRecord,
        now: datetime,
        token: uuid.UUID,
        lease: timedelta,
        expiry: timedelta,
        *,
        taken_over: bool,
    ) -> Reserved:
        zone = self._wall_zone()
        record.lease_token = token
        record.locked_until = _later(now, lease, zone)
        # Every lease extends the expiry over itself: an in-progress record never expires (is
        # never reused or purged) under a live holder.
        kept = _later(now, max(lease, expiry), zone)
        if _instant(record.expires_at, zone) < _instant(kept, zone):
            record.expires_at = kept
        record.save(using=self.using)
        return Reserved(record.pk, token, expiry, record.scope, record.key, taken_over=taken_over)

    def complete(
        self, reservation: Reserved, response: StoredResponse, *, commit: bool = False
    ) -> None:
        """Store the outcome; raises :class:`LeaseLostError` if the lease was taken over.

        Only the current holder of an in-progress record completes it: a completed outcome is
        final, also for a second call with the same reservation. The outcome is replayed for
        the reservation's expiry from now. Call it inside the transaction that holds the
        operation's writes, so that a fenced-out attempt rolls them back with its outcome.

        ``commit=True`` says this is the transaction's last statement and the transaction is
        the connection's own (the outermost atomic block): where the database can, the same
        round trip commits it (``statements.committing``), and the block's own commit then
        finds nothing left to do.
        """
        statements = record_statements(self.using)
        connection = connections[self.using]
        record_id, token = reservation.record_id, reservation.token
        if self.clock is None and statements.clock is not None:  # on the database's clock
            sql = statements.complete_on_db_clock(reservation.expiry)
            if statements.plain_completion:
                params = statements.plain_complete_params(
                    response.status, response.headers, response.body, record_id, token
                )
            else:
                values = _completion(response, IN_STATEMENT, IN_STATEMENT)
                params = statements.complete_params(connection, values, record_id, token)
        else:
            now = self._app_now()
            sql = statements.complete
            values = _completion(response, now, now + reservation.expiry)
            params = statements.complete_params(connection, values, record_id, token)
        with connection.cursor() as cursor:
            if commit and statements.commits_in_completion(connection):
                # Innermost of the connection's execute wrappers: it alone can tell that the
                # statement (its COMMIT included) returned before an outer one raised.
                returned = _Returned()
                connection.execute_wrappers.append(returned)
                try:
                    cursor.execute(committing(sql), params)
                except BaseException as error:
                    if isinstance(error, DatabaseError) and lease_lost_in_database(error):
                        raise LeaseLostError(reservation) from error
                    if returned.ran:
                        raise CommittedThenRaised(error) from error
                    raise
                finally:
                    connection.execute_wrappers.remove(returned)
                return
            cursor.execute(sql, params)
            updated = cursor.rowcount
        if updated != 1:
            raise LeaseLostError(reservation)

    def release(self, reservation: Reserved) -> bool:
        """Free the key for a retry (the operation failed and stored nothing).

        Returns False when the key is no longer this reservation's: another attempt took it
        over, or it completed. A completed record is never released: when a commit reached the
        database but its acknowledgement was lost with the connection, the stored outcome is
        what retries get.
        """
        statements = record_statements(self.using)
        connection = connections[self.using]
        params = statements.release_params(
            connection, reservation.scope, reservation.key, reservation.token
        )

        def delete() -> bool:
            with connection.cursor() as cursor:
                cursor.execute(statements.release, params)
                return bool(cursor.rowcount > 0)

        # The DELETE can still lose to an INSERT's duplicate check on InnoDB (see _insert).
        return self._again_if_deadlocked(delete)


def write_transaction(using: str) -> AbstractContextManager[None]:
    """``transaction.atomic`` for a transaction that writes records.

    On SQLite with DEFERRED transactions (``startproject``'s default) it takes the write lock
    first, as ``"transaction_mode": "IMMEDIATE"`` would: a deferred transaction that read
    before it wrote was refused the write lock at once ("database is locked", 503) whenever
    another connection wrote (a racing duplicate, any writer beside the purge), where now it
    waits for it (the busy timeout). Call it where the block starts (``with``).
    """
    connection = connections[using]
    if connection.in_atomic_block or not _takes_the_write_lock_late(connection):
        # Django's own block, no generator around it: every new key passes here twice.
        return transaction.atomic(using=using)
    return _write_locked_transaction(connection, using)


@contextmanager
def _write_locked_transaction(connection: BaseDatabaseWrapper, using: str) -> Iterator[None]:
    with transaction.atomic(using=using):
        with connection.cursor() as cursor:
            cursor.execute(record_statements(using).take_write_lock)
        yield


def _takes_the_write_lock_late(connection: BaseDatabaseWrapper) -> bool:
    if connection.vendor != "sqlite":
        return False
    mode = connection.settings_dict.get("OPTIONS", {}).get("transaction_mode")
    return str(mode or "DEFERRED").upper() == "DEFERRED"


def _deadlock_victim(
    connection: BaseDatabaseWrapper, error: OperationalError, outermost: bool
) -> bool:
    """A deadlock (InnoDB's 1213) that rolled back only the store's own statement or
    transaction: never one inside a caller's transaction, which it rolled back too."""
    if connection.vendor != "mysql" or not outermost:
        return False
    return bool(error.args) and error.args[0] == 1213


def _back_off(attempt: int) -> None:
    time.sleep(random.uniform(0, 0.002 * attempt))  # the two contenders part ways


def _final_or_held(record: IdempotencyRecord, now: datetime, zone: tzinfo | None) -> bool:
    """A completed outcome not yet expired, or a key its holder's live lease keeps: deciding on
    either changes nothing, so it needs no lock. Anything else may be reused or taken over."""
    if record.state == State.COMPLETED:
        return _instant(record.expires_at, zone) > _instant(now, zone)
    held_until = record.locked_until
    return held_until is not None and _instant(held_until, zone) > _instant(now, zone)


def _instant(value: datetime, zone: tzinfo | None) -> datetime:
    """``value`` as an instant (UTC), a naive one read as a wall time of ``zone``, so that times
    compare and subtract as instants: Python compares two datetimes of one tzinfo, and naive
    ones, by their wall times, ``fold`` ignored, and across a repeated hour a live lease would
    read as run out. ``zone`` None: ``value`` as it is (see ``RecordStore._wall_zone``)."""
    if zone is None:
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def _later(now: datetime, duration: timedelta, zone: tzinfo | None) -> datetime:
    """``duration`` after ``now``, as an instant, in ``now``'s own form (naive: a wall time of
    ``zone``, ``fold`` marking the second of a repeated hour)."""
    if zone is None:
        return now + duration
    later = _instant(now, zone) + duration
    if now.tzinfo is None:
        return later.astimezone(zone).replace(tzinfo=None)
    return later.astimezone(now.tzinfo)


def _completion(response: StoredResponse, completed_at: Any, expires_at: Any) -> dict[str, Any]:
    """The completion's values for the fields' preparation (IN_STATEMENT: the statement's)."""
    return {
        "response_status": response.status,
        "response_headers": [list(header) for header in response.headers],
        "response_body": response.body,
        "completed_at": completed_at,
        "expires_at": expires_at,
    }


def _stored_response(record: IdempotencyRecord) -> StoredResponse:
    return StoredResponse(
        status=record.response_status or 200,
        headers=[(name, value) for name, value in record.response_headers],
        body=bytes(record.response_body),
    )
