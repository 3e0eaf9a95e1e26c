"""Defects found in review of the plain read after a collision and the one-statement purge,
now fixed: each test failed on the database named in its docstring (commit 0039208)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection, connections
from django.test import override_settings

from idempotency.models import IdempotencyRecord
from idempotency.store import InProgress, RecordStore, Replay, Reserved, StoredResponse
from tests.test_store_read_paths import reserve

pytestmark = pytest.mark.django_db(transaction=True)


def in_fresh_thread(work: Callable[[], Any]) -> Any:
    """``work`` on a connection of its own (a new worker thread's), its result or its error."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # handed to the test's thread
            outcome["error"] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@pytest.mark.parametrize("first_use_tz", [True, False], ids=["then-use-tz-off", "then-use-tz-on"])
def test_the_cached_read_converters_follow_a_use_tz_change(first_use_tz: bool) -> None:
    """Defect (MariaDB/MySQL): ``_read_columns`` (idempotency.rows) caches
    ``connection.ops.get_db_converters``
    on the connection object, but MySQL's operations decide at lookup time whether a
    DateTimeField gets its aware-making converter (``if settings.USE_TZ``). A connection whose
    first plain read ran under one USE_TZ keeps that choice after ``override_settings(USE_TZ=
    ...)`` changes it (and across close/reconnect: the wrapper object stays). The plain read then
    returns aware datetimes under USE_TZ=False (or naive ones under USE_TZ=True) where the ORM,
    the locked read, returns the other kind, and the store compares them with the app clock's:
    TypeError (a 500) in ``_final_or_held``. The ORM looks the converters up per query, so the
    locked read never had this. PostgreSQL and SQLite check USE_TZ when converting: they pass.
    """

    def scenario() -> Any:
        with override_settings(USE_TZ=first_use_tz):
            store = RecordStore()  # the database's clock: its own values, self-consistent
            reserve(store, key="warm")
            assert isinstance(reserve(store, key="warm"), InProgress)  # the plain read ran
        connection.close()  # a reconnect does not drop the cache either
        with override_settings(USE_TZ=not first_use_tz):
            start = datetime.now(UTC) if first_use_tz is False else datetime.now()
            store = RecordStore(clock=lambda: start)  # aware or naive, as Django expects
            holder = reserve(store, key="tz")
            assert isinstance(holder, Reserved)
            again = reserve(store, key="tz")  # MariaDB: TypeError, naive against aware
            assert isinstance(again, InProgress)
            # What the ORM returns under these settings: the plain read must agree.
            orm = IdempotencyRecord.objects.get(key="tz").locked_until
            plain = store._read("s", "tz")
            assert plain is not None
            assert (plain.locked_until.tzinfo is None) == (orm.tzinfo is None)
            store.complete(holder, StoredResponse(201, [], b"tz"))
            assert reserve(store, key="tz") == Replay(StoredResponse(201, [], b"tz"))
            return store.poll(scope="s", key="tz", fingerprint="f")

    assert in_fresh_thread(scenario) == Replay(StoredResponse(201, [], b"tz"))
