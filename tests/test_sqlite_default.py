"""SQLite as ``startproject`` configures it: DEFERRED transactions, a rollback journal.

A deferred transaction that has read holds a SHARED lock; its first write then asks for the
write lock, and SQLite refuses it at once, without waiting (waiting could deadlock), while
another connection holds or commits a write. Racing duplicates of a key make such writes
(their reservation INSERT, a takeover): the operation that read first failed with
"database is locked" and answered 503, the *first* request of the race. The store now takes
the write lock when it opens a transaction on such a database (as IMMEDIATE would), so the
operation waits for it within the busy timeout instead.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections

from idempotency.exceptions import IdempotencyKeyInUse
from idempotency.operations import run_once
from tests.testapp.models import Widget

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 15
DUPLICATES = 6


@pytest.fixture
def startproject_sqlite():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's own locking")
    saved = dict(connection.settings_dict["OPTIONS"])
    # A startproject database: no transaction_mode (DEFERRED), no WAL.
    connection.settings_dict["OPTIONS"] = {"timeout": 5}
    connections.close_all()
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=DELETE")
    connections.close_all()
    try:
        yield
    finally:
        connections.close_all()
        connection.settings_dict["OPTIONS"] = saved


def reads_then_writes():
    list(Widget.objects.all()[:1])  # a serializer's lookup, a permission check...
    time.sleep(0.02)
    return {"widget": Widget.objects.create(name="paid").pk}


def test_racing_duplicates_never_fail_the_operation_on_a_default_sqlite(startproject_sqlite):
    errors = []

    def deliver(key):
        try:
            run_once(reads_then_writes, scope="sqlite", key=key, lease=30)
        except IdempotencyKeyInUse:
            pass  # a duplicate meeting the live holder: 409, as it should
        except Exception as error:  # what the race raises is the finding
            errors.append(repr(error))
        finally:
            connections.close_all()

    for round_ in range(ROUNDS):
        threads = [
            threading.Thread(target=deliver, args=(f"evt-{round_}",)) for _ in range(DUPLICATES)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert errors == []
    assert Widget.objects.count() == ROUNDS


def test_the_purge_with_delete_receivers_waits_for_a_writer_instead_of_failing(
    startproject_sqlite,
):
    """With a delete receiver the ORM reads the batch, then deletes it: in a deferred
    transaction the DELETE asked for the write lock while holding a read lock, and SQLite
    refused it at once ("database is locked") whenever another connection was writing. The
    purge now takes the write lock when its transaction opens, as the store does.

    The receiver (run between the ORM's read and its DELETE) starts a writer and gives it
    0.5 s to take the write lock: before the fix it did, and the DELETE failed; now it waits
    for the purge."""
    from datetime import timedelta

    from django.db import transaction
    from django.db.models.signals import pre_delete
    from django.utils import timezone

    from idempotency.models import IdempotencyRecord
    from idempotency.purge import Purger
    from tests.factories import IdempotencyRecordFactory

    past = timezone.now() - timedelta(days=2)
    IdempotencyRecordFactory.create_batch(3, created_at=past, expires_at=past)
    writing = threading.Event()
    writer_errors: list[str] = []

    def writer():
        try:
            with transaction.atomic():
                Widget.objects.create(name="meanwhile")  # the write lock, held to commit
                writing.set()
        except Exception as error:  # reported to the test
            writer_errors.append(repr(error))
        finally:
            connections.close_all()

    threads: list[threading.Thread] = []

    def start_a_writer(sender, **kwargs):
        if not threads:
            threads.append(threading.Thread(target=writer))
            threads[0].start()
            writing.wait(0.5)

    pre_delete.connect(start_a_writer, sender=IdempotencyRecord)
    try:
        result = Purger(batch_size=10).run()
    finally:
        pre_delete.disconnect(start_a_writer, sender=IdempotencyRecord)
        for thread in threads:
            thread.join(10)
    assert result.deleted == 3
    assert IdempotencyRecord.objects.count() == 0
    assert writer_errors == []
    assert Widget.objects.filter(name="meanwhile").exists()
