"""Deleting expired records in short batches, beside live traffic.

A record may go once it has expired, unless it is in progress with a live lease (its holder may
still complete it). Each batch is its own short transaction: it locks the rows it picked (skipping
rows a request holds, where the database can) and deletes exactly those, so no request waits on
the purge for longer than one batch and the purge never waits on a request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connections, router, transaction
from django.db.models import Q, QuerySet
from django.db.models.signals import post_delete, pre_delete

from idempotency.dbclock import database_now
from idempotency.models import IdempotencyRecord
from idempotency.store import write_transaction

Clock = Callable[[], datetime]


_PURGE_COLUMNS = ("id", "scope", "key", "expires_at", "state", "locked_until")


def purgeable(now: datetime, using: str) -> QuerySet[IdempotencyRecord]:
    """Records past their expiry, except those whose holder's lease still runs."""
    live_lease = Q(state=IdempotencyRecord.State.IN_PROGRESS, locked_until__gt=now)
    return IdempotencyRecord.objects.using(using).filter(expires_at__lte=now).exclude(live_lease)


class Purger:
    """Deletes purgeable records ``batch_size`` at a time; ``clock`` is injectable for tests."""

    def __init__(
        self, batch_size: int = 1000, using: str | None = None, clock: Clock | None = None
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1.")
        self.batch_size = batch_size
        self.using = using or router.db_for_write(IdempotencyRecord)
        self.clock = clock  # None: the database's clock, as the store's

    def now(self) -> datetime:
        return self.clock() if self.clock is not None else database_now(self.using)

    def count(self) -> int:
        return purgeable(self.now(), self.using).count()

    def delete_batch(self, cutoff: datetime) -> tuple[int, int]:
        """Delete one batch of records purgeable at ``cutoff``; return (picked, deleted): where
        one statement picks and deletes (PostgreSQL, SQLite), both are what it deleted."""
        if connections[self.using].vendor == "mysql":
            return self._delete_batch_through_the_key_index(cutoff)
        candidates = purgeable(cutoff, self.using).order_by("expires_at")
        # On a deferred SQLite database the write lock first: with delete receivers the ORM
        # reads the batch before it deletes it.
        with write_transaction(self.using):
            if connections[self.using].vendor == "postgresql":
                deleted = self._delete_locked_batch(candidates)
            else:
                # SQLite: its write lock covers the statement; the IN list is computed once.
                # The conditions are checked again beside it (tests/test_store.py races them
                # where the pick is a statement of its own).
                batch = candidates.values("pk")[: self.batch_size]
                deleted, _ = purgeable(cutoff, self.using).filter(pk__in=batch).delete()
        return deleted, deleted

    def _delete_locked_batch(self, candidates: QuerySet[IdempotencyRecord]) -> int:
        """PostgreSQL: one statement locks a batch (skipping rows a request holds) and deletes it.

        The pick is a MATERIALIZED CTE, run exactly once. As ``DELETE ... WHERE id IN (SELECT
        ... LIMIT n FOR UPDATE SKIP LOCKED)``, a nested-loop plan ran the subquery again for each
        outer row, its lock step skipped the rows already deleted, and the LIMIT walked on: one
        batch deleted everything purgeable (CI caught 25 deleted where 10 were asked). Locked
        rows are re-checked by PostgreSQL against the pick's conditions; nothing can change
        them before the DELETE.
        """
        connection = connections[self.using]
        pick = candidates.select_for_update(skip_locked=True).values("pk")[: self.batch_size]
        if pre_delete.has_listeners(IdempotencyRecord) or post_delete.has_listeners(
            IdempotencyRecord
        ):
            # Receivers get their signals from the ORM's delete of the locked rows.
            ids = list(pick.values_list("pk", flat=True))
            deleted, _ = IdempotencyRecord.objects.using(self.using).filter(pk__in=ids).delete()
            return deleted
        pick_sql, params = pick.query.get_compiler(using=self.using).as_sql()
        quote = connection.ops.quote_name
        table = quote(IdempotencyRecord._meta.db_table)
        sql = (
            f"WITH batch AS MATERIALIZED ({pick_sql}) "
            f"DELETE FROM {table} WHERE {quote('id')} IN (SELECT * FROM batch)"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return int(cursor.rowcount)

    def _delete_batch_through_the_key_index(self, cutoff: datetime) -> tuple[int, int]:
        """InnoDB: lock the picked rows through the (scope, key) index, as every request does.

        Locking them through the expires_at index would take each row before its (scope, key)
        entry, the reverse of reserve and release, and deadlock with them. So the pick is a
        plain read, and the lock a second, ``FORCE INDEX``-ed read of exactly those keys that
        skips the ones a request holds.
        """
        connection = connections[self.using]
        picked = list(
            purgeable(cutoff, self.using)
            .order_by("expires_at")
            .values_list("scope", "key")[: self.batch_size]
        )
        if not picked:
            return 0, 0
        meta = IdempotencyRecord._meta
        quote = connection.ops.quote_name
        columns = {name: quote(name) for name in _PURGE_COLUMNS}  # no db_column of their own
        index = quote("idempotency_scope_key_unique")  # the models.UniqueConstraint
        prepared = connection.ops.adapt_datetimefield_value(cutoff)
        keys = " OR ".join([f"({columns['scope']} = %s AND {columns['key']} = %s)"] * len(picked))
        lock = (
            f"SELECT {columns['id']} FROM {quote(meta.db_table)} FORCE INDEX ({index}) "
            f"WHERE ({keys}) AND {columns['expires_at']} <= %s AND NOT ("
            f"{columns['state']} = %s AND {columns['locked_until']} IS NOT NULL "
            f"AND {columns['locked_until']} > %s) FOR UPDATE SKIP LOCKED"
        )
        params: list[Any] = [value for pair in picked for value in pair]
        params += [prepared, IdempotencyRecord.State.IN_PROGRESS.value, prepared]
        with transaction.atomic(using=self.using), connection.cursor() as cursor:
            cursor.execute(lock, params)
            ids = [row[0] for row in cursor.fetchall()]
            if not ids:
                return 0, 0
            # Their index entries and rows are ours now: the delete waits for nothing.
            deleted, _ = IdempotencyRecord.objects.using(self.using).filter(pk__in=ids).delete()
        return len(ids), deleted

    def run(
        self, *, pause: float = 0, on_batch: Callable[[int], None] | None = None
    ) -> PurgeResult:
        """Delete batch after batch until nothing purgeable is left, pausing ``pause`` s between.

        The cutoff is fixed when the run starts, so records expiring meanwhile wait for the next
        run and the run ends: every batch deletes what it picked, or finds it no longer purgeable.
        """
        cutoff = self.now()
        result = PurgeResult()
        while True:
            picked, deleted = self.delete_batch(cutoff)
            if not picked:
                return result
            result.batches += 1
            result.deleted += deleted
            if on_batch is not None:
                on_batch(deleted)
            if pause:
                time.sleep(pause)


@dataclass
class PurgeResult:
    deleted: int = 0
    batches: int = 0
