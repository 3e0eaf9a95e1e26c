"""Purging expired records: only expired ones, in bounded batches, beside live traffic."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from idempotency.models import IdempotencyRecord
from idempotency.purge import Purger
from tests.factories import IdempotencyRecordFactory
from tests.testapp.models import Widget

pytestmark = pytest.mark.django_db(transaction=True)

COMMAND = "purge_idempotency_records"


def make(count, prefix, *, now, expires_in, **traits):
    """Records ``prefix-0``... expiring ``expires_in`` from ``now`` (negative: expired)."""
    return [
        IdempotencyRecordFactory(
            key=f"{prefix}-{i}",
            created_at=now - timedelta(hours=1),
            expires_at=now + expires_in,
            **traits,
        )
        for i in range(count)
    ]


def keys_left():
    return set(IdempotencyRecord.objects.values_list("key", flat=True))


def purge(*args):
    out = StringIO()
    call_command(COMMAND, *args, stdout=out)
    return out.getvalue()


def test_deletes_expired_records_and_keeps_the_rest(clock):
    now = clock.now
    make(3, "expired", now=now, expires_in=-timedelta(seconds=1))
    make(1, "expires-now", now=now, expires_in=timedelta(0))
    make(2, "live", now=now, expires_in=timedelta(seconds=1))
    # In progress past its expiry: its holder may still complete while the lease runs.
    make(1, "held", now=now, expires_in=-timedelta(hours=1), in_progress=True,
         locked_until=now + timedelta(seconds=30))  # fmt: skip
    # In progress, expired and its lease run out: the holder is presumed dead.
    make(1, "abandoned", now=now, expires_in=-timedelta(hours=1), in_progress=True,
         locked_until=now - timedelta(seconds=1))  # fmt: skip

    result = Purger(clock=clock).run()

    assert (result.deleted, result.batches) == (5, 1)
    assert keys_left() == {"live-0", "live-1", "held-0"}


def test_batches_are_bounded_and_each_is_its_own_transaction(clock):
    make(25, "expired", now=clock.now, expires_in=-timedelta(days=1))
    make(3, "live", now=clock.now, expires_in=timedelta(days=1))
    sizes = []

    with CaptureQueriesContext(connection) as context:
        result = Purger(batch_size=10, clock=clock).run(on_batch=sizes.append)

    assert sizes == [10, 10, 5]
    assert (result.deleted, result.batches) == (25, 3)
    queries = [query["sql"] for query in context.captured_queries]
    if connection.vendor == "mysql":
        # InnoDB: a plain pick, then the batch locked through the (scope, key) index, the order
        # every request locks in (idempotency.purge).
        batch = ["SELECT", "BEGIN", "SELECT", "DELETE", "COMMIT"]
        assert [sql.split()[0] for sql in queries] == batch * 3 + ["SELECT"]
        selects = [sql for sql in queries if sql.startswith("SELECT")]
        assert all(sql.rstrip().endswith(("LIMIT 10", "FOR UPDATE SKIP LOCKED")) for sql in selects)
        locks = [sql for sql in selects if "LIMIT" not in sql]
        assert len(locks) == 3
        assert all("FORCE INDEX" in sql and "FOR UPDATE SKIP LOCKED" in sql for sql in locks)
    else:
        # Each batch is one short transaction of one statement: it picks at most batch-size
        # rows (FOR UPDATE SKIP LOCKED on PostgreSQL) and deletes them, conditions re-checked.
        if connection.vendor == "postgresql":  # the pick a MATERIALIZED CTE, run once
            assert [sql.split()[0] for sql in queries] == ["BEGIN", "WITH", "COMMIT"] * 4
            deletes = [sql for sql in queries if sql.startswith("WITH")]
            assert all(
                sql.startswith("WITH batch AS MATERIALIZED (SELECT")
                and "LIMIT 10 FOR UPDATE SKIP LOCKED) DELETE FROM" in sql
                for sql in deletes
            )
        else:
            assert [sql.split()[0] for sql in queries] == ["BEGIN", "DELETE", "COMMIT"] * 4
            deletes = [sql for sql in queries if sql.startswith("DELETE")]
            assert all(sql.rstrip().endswith("LIMIT 10))") for sql in deletes)
    assert len(keys_left()) == 3


def test_records_expiring_during_a_run_wait_for_the_next_run(clock):
    make(2, "expired", now=clock.now, expires_in=-timedelta(seconds=1))
    make(1, "soon", now=clock.now, expires_in=timedelta(seconds=5))
    purger = Purger(batch_size=1, clock=clock)

    def move_time(deleted):
        clock.advance(seconds=10)  # "soon" expires while the run goes on

    assert purger.run(on_batch=move_time).deleted == 2
    assert keys_left() == {"soon-0"}
    assert purger.run().deleted == 1


def test_command_deletes_and_reports():
    now = timezone.now()
    make(4, "expired", now=now, expires_in=-timedelta(minutes=1))
    make(2, "live", now=now, expires_in=timedelta(hours=1))

    output = purge("--batch-size", "3")

    assert output == "Deleted 4 expired idempotency record(s) in 2 batch(es).\n"
    assert keys_left() == {"live-0", "live-1"}


def test_command_reports_each_batch_when_verbose():
    make(3, "expired", now=timezone.now(), expires_in=-timedelta(minutes=1))
    output = purge("--batch-size", "2", "--verbosity", "2", "--sleep", "0.01")
    assert output.splitlines() == [
        "  deleted 2",
        "  deleted 1",
        "Deleted 3 expired idempotency record(s) in 2 batch(es).",
    ]


def test_dry_run_counts_and_deletes_nothing():
    make(4, "expired", now=timezone.now(), expires_in=-timedelta(minutes=1))
    make(1, "live", now=timezone.now(), expires_in=timedelta(hours=1))
    assert purge("--dry-run") == "Would delete 4 expired idempotency record(s) (dry run).\n"
    assert IdempotencyRecord.objects.count() == 5


def test_nothing_to_purge():
    assert purge() == "Deleted 0 expired idempotency record(s) in 0 batch(es).\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be between 1 and 100000, not 0."),
        (["--batch-size", "-5"], "--batch-size must be between 1 and 100000, not -5."),
        (["--batch-size", str(2**70)], f"--batch-size must be between 1 and 100000, not {2**70}."),
        (["--batch-size", "many"], "invalid int value: 'many'"),
        (["--sleep", "-1"], "--sleep must be a number of seconds from 0 to 3600, not -1.0."),
        (["--sleep", "nan"], "--sleep must be a number of seconds from 0 to 3600, not nan."),
        (["--sleep", "inf"], "--sleep must be a number of seconds from 0 to 3600, not inf."),
        (["--sleep=-inf"], "--sleep must be a number of seconds from 0 to 3600, not -inf."),
        (["--sleep", "1e300"], "--sleep must be a number of seconds from 0 to 3600, not 1e+300."),
        (["--database", "nope"], "--database 'nope' is not in settings.DATABASES"),
    ],
)
@pytest.mark.parametrize("dry_run", [False, True])
def test_command_refuses_bad_options_before_deleting_anything(args, message, dry_run):
    # Batches of one, so a check made only after the first batch (a pause of NaN seconds used
    # to raise ValueError there) would have deleted a record by the time it failed.
    make(3, "expired", now=timezone.now(), expires_in=-timedelta(minutes=1))
    with pytest.raises(CommandError, match=re.escape(message)):
        purge("--batch-size", "1", *args, *(["--dry-run"] if dry_run else []))
    assert IdempotencyRecord.objects.count() == 3


def test_command_accepts_the_bounds():
    make(2, "expired", now=timezone.now(), expires_in=-timedelta(minutes=1))
    assert purge("--batch-size", "100000", "--sleep", "0", "--database", "default") == (
        "Deleted 2 expired idempotency record(s) in 1 batch(es).\n"
    )


def test_an_expired_key_purged_meanwhile_runs_anew(api, clocked_store, clock):
    """A retry after the purge finds no record: a new operation, as for any expired key."""
    headers = {"Idempotency-Key": "k"}
    api.post("/test/widgets", {"name": "a"}, format="json", headers=headers)
    clock.advance(hours=25)
    assert Purger(clock=clock).run().deleted == 1

    retry = api.post("/test/widgets", {"name": "a"}, format="json", headers=headers)

    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry
    assert Widget.objects.count() == 2
    assert IdempotencyRecord.objects.get().state == "completed"


@pytest.mark.row_locks
def test_purge_skips_a_row_a_request_holds_and_never_waits_for_it():
    now = timezone.now()
    held, *others = make(5, "expired", now=now, expires_in=-timedelta(minutes=1))
    locked, release = threading.Event(), threading.Event()

    def request_deciding_on_the_key():
        try:
            with transaction.atomic():
                IdempotencyRecord.objects.select_for_update().get(pk=held.pk)
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=request_deciding_on_the_key)
    thread.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        result = Purger(batch_size=2).run()
        elapsed = time.monotonic() - started
    finally:
        release.set()
        thread.join()

    assert result.deleted == 4
    assert elapsed < 1.0
    assert keys_left() == {held.key}


@pytest.mark.postgres  # generate_series; the lock order on MariaDB: tests/test_deadlocks.py
def test_purge_beside_live_traffic_deletes_only_expired_and_delays_no_request():
    """Requests reuse expired keys and make new ones while 100,000 expired records go.

    Without batches (one DELETE of everything, over a second here), a request whose expired key
    is in that DELETE waits for all of it; with batches it waits for one batch at most.
    """
    now = timezone.now()
    expired, live = 100_000, 300
    with connection.cursor() as cursor:  # fast enough to make the purge long, unlike the ORM
        cursor.execute(
            f"""
            INSERT INTO {IdempotencyRecord._meta.db_table}
                (scope, key, fingerprint, method, path, state, response_status,
                 response_headers, response_body, created_at, completed_at, expires_at)
            SELECT 'anonymous', 'old-' || i, repeat('0', 64), 'POST', '/test/widgets',
                   'completed', 201, '[]', '', %s, %s, %s
            FROM generate_series(0, %s - 1) AS i
            """,
            [now - timedelta(days=2), now - timedelta(days=2), now - timedelta(days=1), expired],
        )
    make(live, "live", now=now, expires_in=timedelta(hours=1))

    def traffic(phase, stop, threads=4):
        """Each thread posts, alternating an expired key (runs anew) and a new key."""
        results = []
        lock = threading.Lock()

        def client(t):
            api = APIClient()
            i = 0
            try:
                while not stop.is_set():
                    # Phase 1 reuses old-0..., phase 2 old-50000...: keys the purge is deleting.
                    old = f"old-{(phase - 1) * 50_000 + t * 10_000 + i}"
                    key = old if i % 2 else f"new-{phase}-{t}-{i}"
                    started = time.monotonic()
                    response = api.post(
                        "/test/widgets", {"name": key}, format="json",
                        headers={"Idempotency-Key": key},
                    )  # fmt: skip
                    elapsed = time.monotonic() - started
                    with lock:
                        results.append((key, response.status_code, elapsed, response))
                    i += 1
            finally:
                connections.close_all()

        workers = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
        for worker in workers:
            worker.start()
        return workers, results

    # The same traffic without a purge, for comparison.
    stop = threading.Event()
    workers, baseline = traffic(1, stop)
    time.sleep(1.5)
    stop.set()
    for worker in workers:
        worker.join()

    stop = threading.Event()
    workers, during = traffic(2, stop)
    time.sleep(0.2)
    started = time.monotonic()
    output = purge()  # the default batch size
    purge_seconds = time.monotonic() - started
    stop.set()
    for worker in workers:
        worker.join()

    worst_baseline = max(elapsed for _, _, elapsed, _ in baseline)
    worst_during = max(elapsed for _, _, elapsed, _ in during)
    print(  # the numbers the report quotes (pytest -s)
        f"\npurge of {expired} records: {purge_seconds:.2f} s ({output.strip()}); "
        f"{len(baseline)} requests before, worst {worst_baseline * 1000:.0f} ms; "
        f"{len(during)} during, worst {worst_during * 1000:.0f} ms"
    )
    assert len(during) >= 20
    assert {status for _, status, _, _ in baseline + during} == {201}
    assert not [r for *_, r in during if "Idempotent-Replayed" in r]
    assert worst_during < max(1.0, 3 * worst_baseline)

    # Only expired records went: the live ones and every record the traffic wrote are kept.
    traffic_keys = {key for key, *_ in baseline + during}
    reused = {key for key in traffic_keys if key.startswith("old-")}
    assert keys_left() == traffic_keys | {f"live-{i}" for i in range(live)}
    deleted = int(output.split()[1])
    assert expired - len(reused) <= deleted <= expired - len(reused & {k for k, *_ in baseline})
    assert Widget.objects.count() == len(traffic_keys)
    assert not IdempotencyRecord.objects.filter(expires_at__lte=timezone.now()).exists()


@pytest.mark.postgres
@pytest.mark.parametrize("plan", ["nested loop", "hash join"])
def test_a_batch_stays_bounded_whatever_plan_postgresql_picks(clock, plan):
    """A batch deletes at most ``batch_size`` records, whatever join PostgreSQL plans.

    ``DELETE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)`` planned as a nested
    loop rescans its subquery for each outer row; on a rescan the rows this statement already
    deleted are skipped by the lock step, so the LIMIT walks on and one batch deleted every
    purgeable record (25 where 10 were asked; found by CI, where the table's statistics led the
    planner there; the settings below force it). One long transaction is what batches exist to
    prevent.
    """
    make(25, "expired", now=clock.now, expires_in=-timedelta(days=1))
    sizes = []
    # No hashing, sorting or materializing: the subquery can only be the inner side of a nested
    # loop, run again for each outer row.
    disabled = ["enable_hashagg", "enable_hashjoin", "enable_material", "enable_sort"]
    if plan == "hash join":
        disabled = ["enable_nestloop", "enable_mergejoin"]
    with connection.cursor() as cursor:
        for setting in disabled:
            cursor.execute(f"SET {setting} = off")
    try:
        Purger(batch_size=10, clock=clock).run(on_batch=sizes.append)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ALL")
    assert sizes == [10, 10, 5]
