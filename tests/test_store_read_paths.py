"""Paths of the reservation and its read checked in review and found sound.

Each test covers a path tests/test_store.py does not: the row read back by the store's own
SELECT decoded as the ORM decodes it, the reservation under real races (a row committed after
the INSERT began, a holder that rolls back, a completion that rolls back), commits that stay
synchronous on every entry point, time zones and server-side binding. On PostgreSQL each runs
on the reservation's function and on the two statements that stand in for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from django.db import close_old_connections, connection, connections, transaction
from django.test import override_settings

from idempotency import reserve_function
from idempotency.models import IdempotencyRecord
from idempotency.operations import arun_once, run_once
from idempotency.store import (
    InProgress,
    Mismatch,
    RecordStore,
    Replay,
    Reserved,
    StoredResponse,
    _stored_response,
)
from tests.factories import IdempotencyRecordFactory
from tests.test_store import LEASE, reserve, synchronous_commit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True, params=["native", "statements"])
def reservation(request, monkeypatch):
    """Each path on the database's own reservation (PostgreSQL's function) and, on PostgreSQL,
    on the INSERT and SELECT that stand in for the function where it is missing."""
    if request.param == "statements":
        if connection.vendor != "postgresql":
            pytest.skip("the same statements as native: only PostgreSQL has the function")
        monkeypatch.setattr(reserve_function, "available", lambda connection: False)
    return request.param


def raw_connection() -> psycopg.Connection[Any]:
    """A connection of its own to the test database, outside Django (a racing worker)."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params)


def hold_uncommitted(other: psycopg.Connection[Any], key: str) -> None:
    """Another worker's reservation of ``key`` (a live lease), left uncommitted on ``other``."""
    other.execute(
        "INSERT INTO idempotency_idempotencyrecord (scope, key, fingerprint, method, path,"
        " state, response_headers, response_body, lease_token, locked_until, created_at,"
        " expires_at) VALUES ('s', %s, 'f', 'POST', '/p', 'in_progress', '[]', '', NULL,"
        " now() + interval '60 seconds', now(), now() + interval '1 day')",
        [key],
    )


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``target`` in a thread of its own (its own Django connection); its result or error."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(target())
        except BaseException as error:  # reported to the test
            out.append(error)
        finally:
            close_old_connections()
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


OUTCOMES = {
    "non-ascii headers": StoredResponse(
        201, [("Content-Type", "text/plain; charset=utf-8"), ("X-Name", "Zoë ☃ 名前")], b"ok"
    ),
    "empty body": StoredResponse(204, [], b""),
    "binary body": StoredResponse(200, [("X", "1")], bytes(range(256)) * 3),
    "huge body": StoredResponse(200, [], b"x" * (8 * 1024 * 1024)),
    "quotes in headers": StoredResponse(200, [("X-J", '{"a": "\\"b\\""}')], b"{}"),
}


@pytest.mark.parametrize("clocked", [False, True], ids=["database-clock", "app-clock"])
@pytest.mark.parametrize("name", list(OUTCOMES))
def test_the_row_read_back_replays_what_the_orm_reads(name, clocked, clock):
    """The read's row is decoded as the ORM decodes the record (JSON headers, bytes)."""
    store = RecordStore(clock=clock) if clocked else RecordStore()
    outcome = OUTCOMES[name]
    store.complete(reserve(store), outcome)
    replay = reserve(store)
    assert replay == Replay(outcome)
    assert replay == Replay(_stored_response(IdempotencyRecord.objects.get()))


def test_a_completed_record_without_a_status_replays_200():
    """``response_status`` NULL (a record written by hand or by an older version) reads back
    as None on every path, and replays as 200."""
    IdempotencyRecordFactory(
        scope="s", key="k", fingerprint="f", response_status=None, response_headers=[]
    )
    assert reserve(RecordStore()) == Replay(StoredResponse(200, [], b'{"id": 1}'))


@pytest.mark.postgres
def test_autocommitted_reservation_leaves_the_next_transaction_synchronous():
    store = RecordStore()
    assert isinstance(reserve(store, key="a"), Reserved)
    assert synchronous_commit() == "on"
    with transaction.atomic():
        assert synchronous_commit() == "on"


@pytest.mark.postgres
@pytest.mark.parametrize("durable", [False, True])
def test_run_once_inside_a_callers_atomic_block_commits_synchronously(durable):
    seen: list[str] = []

    def operation() -> int:
        seen.append(synchronous_commit())
        return 1

    with transaction.atomic(durable=durable):
        assert run_once(operation, scope="jobs", key="inside") == 1
        # A nested guard with another key, and the same key again (a replay in the same
        # transaction: its own uncommitted row, read by the statement).
        assert run_once(operation, scope="jobs", key="nested") == 1
        assert run_once(operation, scope="jobs", key="inside") == 1
        assert synchronous_commit() == "on"
    assert seen == ["on", "on"]


@pytest.mark.postgres
def test_run_once_autocommitted_runs_the_operation_with_synchronous_commit_on():
    seen: list[str] = []

    def operation() -> int:
        seen.append(synchronous_commit())
        return 1

    assert run_once(operation, scope="jobs", key="auto") == 1
    assert seen == ["on"]


@pytest.mark.postgres
def test_arun_once_runs_the_operation_with_synchronous_commit_on():
    import asyncio

    from asgiref.sync import sync_to_async

    seen: list[str] = []

    async def operation() -> int:
        seen.append(await sync_to_async(synchronous_commit)())
        return 2

    assert asyncio.run(arun_once(operation, scope="jobs", key="async")) == 2
    assert asyncio.run(arun_once(operation, scope="jobs", key="async")) == 2
    assert seen == ["on"]


@pytest.mark.postgres
def test_a_row_committed_after_the_insert_began_is_read_by_the_plain_read(monkeypatch):
    """The INSERT waits for an uncommitted conflicting INSERT; once it commits, the read
    finds it (no lock needed: its holder's lease is live). The function's read is its own
    statement, with a snapshot taken after the wait: the store reads nothing more."""
    store = RecordStore()
    reads: list[str] = []
    original = RecordStore._read

    def counting_read(self: RecordStore, scope: str, key: str, *, lock: bool = False) -> Any:
        reads.append("lock" if lock else "plain")
        return original(self, scope, key, lock=lock)

    monkeypatch.setattr(RecordStore, "_read", counting_read)
    with raw_connection() as other:
        hold_uncommitted(other, "late")
        thread, out = in_thread(lambda: reserve(store, key="late"))
        time.sleep(0.3)
        assert thread.is_alive(), "the INSERT waits for the uncommitted row"
        other.commit()
        thread.join(10)
    (decision,) = out
    assert isinstance(decision, InProgress)
    assert timedelta(seconds=50) < decision.retry_after <= LEASE
    assert reads == ([] if reserve_function.available(connection) else ["plain"])


@pytest.mark.postgres
def test_a_holder_that_rolls_back_leaves_the_key_to_the_waiting_statement():
    store = RecordStore()
    with raw_connection() as other:
        hold_uncommitted(other, "gone")
        thread, out = in_thread(lambda: reserve(store, key="gone"))
        time.sleep(0.3)
        other.rollback()
        thread.join(10)
    (decision,) = out
    assert isinstance(decision, Reserved)


@pytest.mark.postgres
def test_a_deleted_and_reinserted_row_is_answered_from_the_new_row():
    """A transaction deletes the key's completed row and inserts a new one; the INSERT that
    began before its commit waits, collides with the new row, and the read answers from it:
    in progress under its new holder, never a reservation beside it."""
    store = RecordStore()
    store.complete(reserve(store, key="re"), StoredResponse(201, [], b"old"))
    with raw_connection() as other:
        other.execute("DELETE FROM idempotency_idempotencyrecord WHERE key = 're'")
        hold_uncommitted(other, "re")
        thread, out = in_thread(lambda: reserve(store, key="re"))
        time.sleep(0.3)
        other.commit()
        thread.join(10)
    (decision,) = out
    assert isinstance(decision, InProgress)


@pytest.mark.row_locks
def test_concurrent_first_requests_reserve_once():
    """Threads race the reservation of one new key (autocommitted):
    one reserves, every other is told it is in progress."""
    barrier = threading.Barrier(8)

    def attempt() -> Any:
        barrier.wait()
        return reserve(RecordStore(), key="race")

    for _ in range(5):
        IdempotencyRecord.objects.filter(key="race").delete()
        started = [in_thread(attempt) for _ in range(8)]
        decisions = []
        for thread, out in started:
            thread.join(20)
            decisions.extend(out)
        assert sum(isinstance(d, Reserved) for d in decisions) == 1, decisions
        assert all(isinstance(d, Reserved | InProgress) for d in decisions), decisions


@pytest.mark.row_locks
def test_racing_takeovers_of_a_lapsed_lease_take_it_once():
    from django.utils import timezone

    barrier = threading.Barrier(6)

    def attempt() -> Any:
        barrier.wait()
        return reserve(RecordStore(), key="lapsed")

    for _ in range(3):
        IdempotencyRecord.objects.filter(key="lapsed").delete()
        IdempotencyRecordFactory(
            scope="s",
            key="lapsed",
            fingerprint="f",
            in_progress=True,
            locked_until=timezone.now() - timedelta(seconds=5),
        )
        started = [in_thread(attempt) for _ in range(6)]
        decisions = []
        for thread, out in started:
            thread.join(20)
            decisions.extend(out)
        reserved = [d for d in decisions if isinstance(d, Reserved)]
        assert len(reserved) == 1, decisions
        assert reserved[0].taken_over
        assert all(isinstance(d, Reserved | InProgress) for d in decisions), decisions


@pytest.mark.row_locks
def test_a_completion_rolled_back_is_never_replayed():
    """The lock-free decision reads only committed rows: while the holder's completion sits
    uncommitted (and is then rolled back), duplicates get 409, never the outcome."""
    store = RecordStore()
    holder = reserve(store, key="rb")
    assert isinstance(holder, Reserved)
    stop = threading.Event()

    def duplicates() -> list[Any]:
        seen = []
        while not stop.is_set():
            seen.append(reserve(RecordStore(), key="rb"))
        return seen

    threads = [in_thread(duplicates) for _ in range(3)]
    with transaction.atomic():
        store.complete(holder, StoredResponse(201, [], b"never"))
        time.sleep(0.5)
        transaction.set_rollback(True)
    time.sleep(0.1)
    stop.set()
    seen = []
    for thread, out in threads:
        thread.join(20)
        seen.extend(out[0])
    assert seen and all(isinstance(d, InProgress) for d in seen), {type(d) for d in seen}


@pytest.mark.row_locks
def test_duplicates_racing_a_completion_see_409_then_the_outcome():
    store = RecordStore()
    holder = reserve(store, key="done")
    stop = threading.Event()
    outcome = StoredResponse(201, [("X", "é")], b"done")

    def duplicates() -> list[Any]:
        seen = []
        while not stop.is_set():
            seen.append(reserve(RecordStore(), key="done"))
        seen.append(reserve(RecordStore(), key="done"))
        return seen

    threads = [in_thread(duplicates) for _ in range(3)]
    time.sleep(0.1)
    with transaction.atomic():
        store.complete(holder, outcome)
    time.sleep(0.1)
    stop.set()
    for thread, out in threads:
        thread.join(20)
        (seen,) = out
        kinds = [type(d) for d in seen]
        # Never a reservation, never back to 409 once the outcome was seen.
        first_replay = kinds.index(Replay)
        assert all(k is InProgress for k in kinds[:first_replay])
        assert all(d == Replay(outcome) for d in seen[first_replay:])


@pytest.mark.postgres
@pytest.mark.parametrize("clocked", [False, True], ids=["database-clock", "naive-app-clock"])
def test_use_tz_false_with_a_local_time_zone(clocked):
    """USE_TZ=False, TIME_ZONE not UTC: the statement's times (naive, the connection's zone)
    and the database's now compare as the ORM's would."""
    with override_settings(USE_TZ=False, TIME_ZONE="America/New_York"):
        connection.close()
        if clocked:
            start = datetime.now()  # naive local time, as Django expects with USE_TZ=False

            def naive_clock() -> datetime:
                return start

            store = RecordStore(clock=naive_clock)
        else:
            store = RecordStore()
        holder = reserve(store, key="tz")
        assert isinstance(holder, Reserved)
        again = reserve(store, key="tz")
        assert isinstance(again, InProgress)
        assert timedelta(seconds=55) < again.retry_after <= LEASE
        assert reserve(store, key="tz", fingerprint="other") == Mismatch("POST", "/p")
        store.complete(holder, StoredResponse(201, [], b"tz"))
        assert reserve(store, key="tz") == Replay(StoredResponse(201, [], b"tz"))
        assert store.poll(scope="s", key="tz", fingerprint="f") == Replay(
            StoredResponse(201, [], b"tz")
        )
    connection.close()


@pytest.mark.postgres
def test_server_side_binding_runs_the_statement():
    """``OPTIONS: {"server_side_binding": True}``: the parameters are typed by the server."""
    options = connection.settings_dict.setdefault("OPTIONS", {})
    connection.close()
    options["server_side_binding"] = True
    try:
        for store in (RecordStore(), RecordStore(clock=lambda: datetime.now().astimezone())):
            key = f"ssb-{store.clock is None}"
            holder = reserve(store, key=key)
            assert isinstance(holder, Reserved)
            assert isinstance(reserve(store, key=key), InProgress)
            store.complete(holder, StoredResponse(200, [("X", "ü")], b"b"))
            assert reserve(store, key=key) == Replay(StoredResponse(200, [("X", "ü")], b"b"))
    finally:
        connection.close()
        del options["server_side_binding"]
