"""Defects a hostile review found in a reservation change (commit 61ef3ec), now fixed.

Each test failed on that commit: its docstring says what went wrong and what it cost. The
asynchronous commit of the reservation was dropped (the crash test); the churn answers in
progress. Paths that were checked and found sound are in tests/test_store_read_paths.py.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, connections, transaction

from idempotency.models import IdempotencyRecord
from idempotency.operations import run_once
from idempotency.store import InProgress, RecordStore, Reserved
from tests.test_store import reserve, synchronous_commit
from tests.test_store_read_paths import in_thread

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.postgres
def test_autocommit_off_reservation_leaves_the_callers_commit_synchronous():
    """With Django's autocommit turned off (``transaction.set_autocommit(False)``, or
    ``"AUTOCOMMIT": False`` in DATABASES) the connection is inside a transaction although
    ``connection.in_atomic_block`` is False. The store takes that for "autocommitted" and runs
    the asynchronous variant: ``set_config('synchronous_commit', 'off', true)`` then lasts until
    the caller's commit, so every write the caller commits with the reservation (the operation's
    writes, the stored outcome) commits asynchronously and may be lost by a database crash after
    the client was answered. docs/databases.md promises the opposite ("Inside a transaction of
    yours ... your commit stays synchronous").

    Fix: choose the asynchronous statement only when ``connection.get_autocommit() and not
    connection.in_atomic_block``.
    """
    store = RecordStore()
    transaction.set_autocommit(False)
    try:
        assert isinstance(reserve(store, key="manual"), Reserved)
        setting = synchronous_commit()
    finally:
        transaction.rollback()
        transaction.set_autocommit(True)
    assert setting == "on"


@pytest.mark.postgres
def test_run_once_with_autocommit_off_commits_the_operation_synchronously():
    """The same defect end to end: ``run_once`` on a connection whose autocommit the caller
    turned off (a management command or a worker that manages its transactions by hand). The
    operation's writes and the stored result go into the caller's transaction, whose commit the
    reservation has made asynchronous: the function runs with ``synchronous_commit`` off.
    """
    seen: list[str] = []

    def operation() -> int:
        seen.append(synchronous_commit())
        return 1

    transaction.set_autocommit(False)
    try:
        assert run_once(operation, scope="jobs", key="manual-1") == 1
        transaction.commit()
        after_commit = synchronous_commit()  # the next transaction's: the default again
    finally:
        transaction.rollback()
        transaction.set_autocommit(True)
    assert IdempotencyRecord.objects.filter(key="manual-1", state="completed").exists()
    assert after_commit == "on"
    assert seen == ["on"]


@pytest.mark.postgres
def test_autocommit_false_in_settings_keeps_commits_synchronous():
    """``"AUTOCOMMIT": False`` in DATABASES (Django's documented opt-out of autocommit): the
    first statement the connection runs is the reservation, and its ``set_config`` turns the
    whole transaction the caller later commits asynchronous.
    """
    settings_dict = connection.settings_dict
    connection.close()
    settings_dict["AUTOCOMMIT"] = False
    try:
        store = RecordStore()
        assert isinstance(reserve(store, key="settings-off"), Reserved)
        setting = synchronous_commit()
        connection.rollback()
    finally:
        connection.close()
        settings_dict["AUTOCOMMIT"] = True
    assert setting == "on"


def _pg_ctl(*args: str) -> None:
    import os
    import shlex
    import subprocess

    command = shlex.join(["pg_ctl", *args])
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        subprocess.run(["su", "postgres", "-s", "/bin/bash", "-c", command], check=True)
    else:
        subprocess.run(command, shell=True, check=True)


@pytest.fixture
def crashable_alias(transactional_db):
    """A PostgreSQL cluster of the test's own (so that it may crash it), as alias ``crash``.

    ``wal_writer_delay`` at its maximum (10 s) widens the window in which an asynchronous
    commit is not yet on disk (200 ms by default, up to 3x that under PostgreSQL's own rules).
    """
    import os
    import shutil
    import subprocess

    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        pytest.skip("needs PostgreSQL's server binaries (initdb, pg_ctl)")
    import tempfile
    from pathlib import Path

    # Not pytest's tmp_path: its parents are private to the user, and the server runs as
    # another user when the tests run as root.
    base = Path(tempfile.mkdtemp(prefix="idem-pgcrash-"))
    data = base / "data"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        run_as = ["su", "postgres", "-s", "/bin/bash", "-c"]
        subprocess.run(
            [*run_as, f"initdb -D {data} -U postgres --auth=trust"], check=True, capture_output=True
        )
    else:
        subprocess.run(
            ["initdb", "-D", str(data), "-U", "postgres", "--auth=trust"],
            check=True,
            capture_output=True,
        )
    options = f"-p 55439 -k {base} -c listen_addresses= -c wal_writer_delay=10000 -c autovacuum=off"

    def start() -> None:
        _pg_ctl("-D", str(data), "-l", str(base / "log"), "-w", "-o", options, "start")

    def crash() -> None:
        _pg_ctl("-D", str(data), "-m", "immediate", "-w", "stop")

    start()
    settings = connections.configure_settings(
        {
            "default": dict(connections.settings["default"]),
            "crash": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": "postgres",
                "USER": "postgres",
                "HOST": str(base),
                "PORT": "55439",
            },
        }
    )
    # Not in connections.settings: Django's test case then takes it for a connection made at
    # run time (allowed), not a configured database the test did not ask for.
    from django.db.utils import load_backend

    backend = load_backend(settings["crash"]["ENGINE"])
    connections["crash"] = backend.DatabaseWrapper(settings["crash"], "crash")
    with connections["crash"].schema_editor() as editor:
        editor.create_model(IdempotencyRecord)
    try:
        yield crash, start
    finally:
        connections["crash"].close()
        del connections["crash"]
        crash()
        shutil.rmtree(base, ignore_errors=True)


def _warm_up_the_wal_writer(alias: str) -> None:
    """One asynchronous commit the WAL writer flushes at once: for ``wal_writer_delay`` after
    it, it flushes only whole WAL pages, as under steady load."""
    with connections[alias].cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SELECT txid_current()")  # commits an xid: nothing else changes
        cursor.execute("RESET synchronous_commit")
    time.sleep(0.05)


@pytest.mark.postgres
def test_a_database_crash_does_not_hand_a_live_holders_key_to_a_duplicate(crashable_alias):
    """The asynchronous reservation is lost by a database crash (or failover) within
    ``wal_writer_delay`` of its commit, while its holder is alive and running: docs/databases.md
    says that costs nothing ("the key is simply new again, as after a release ... exactly as it
    would be after a takeover"), but a release or a takeover comes only after the holder stopped
    or its lease ran out. Here the holder's lease is live, and:

    - a duplicate gets ``Reserved`` and runs the operation beside the holder (two concurrent
      executions of one key; a durable reservation answers 409 until the lease runs out);
    - the holder, reconnected (PgBouncer's transaction pooling hides a server restart from the
      app; so does any reconnect between statements), is fenced out at completion
      (LeaseLostError): what it did outside the records' database (another alias, a gateway
      call before its first write) is orphaned, where a durable reservation let it complete.

    The control shows that the same crash keeps a reservation committed synchronously. Suggested
    fix: keep the reservation synchronous, or document the window honestly (a crash within
    ~3 x wal_writer_delay of a reservation can let a duplicate run beside a live holder, and
    fence that holder out) and offer a setting to turn the asynchronous commit off.
    """
    crash, start = crashable_alias
    store = RecordStore(using="crash")

    # Control: a reservation committed synchronously (inside a transaction) survives.
    with transaction.atomic(using="crash"):
        durable = reserve(store, key="durable")
    assert isinstance(durable, Reserved)
    _warm_up_the_wal_writer("crash")
    holder = reserve(store, key="asynchronous")  # autocommitted: commits asynchronously
    assert isinstance(holder, Reserved)
    crash()
    start()
    connections["crash"].close()  # the app's next statement reaches the restarted server
    assert isinstance(reserve(store, key="durable"), InProgress)

    duplicate = reserve(store, key="asynchronous")
    assert not isinstance(duplicate, Reserved), "a second execution beside the live holder"


@pytest.mark.row_locks
def test_churn_of_release_and_reserve_never_exhausts_the_attempts():
    """PRE-EXISTING, MariaDB only, intermittent (about 1 run in 3 here; 3 in 3 on 7893932; passes on
    PostgreSQL): workers that reserve and release one key as fast as they can (clients retrying
    an operation that keeps failing). On InnoDB the INSERT IGNORE collides with a row that the
    plain read and the locking read then no longer find, three times running, and reserve()
    raises RuntimeError("Could not reserve ... after retries"): an unhandled 500 for a request
    that should have been reserved or told 409.

    Suggested fix: when the row vanished, loop without a bound on the count but with a time
    bound (the lease), or answer InProgress (retryable 409) instead of raising.
    """
    stop = threading.Event()

    def churn() -> list[Any]:
        store = RecordStore()
        seen = []
        while not stop.is_set():
            decision = reserve(store, key="churn")
            seen.append(decision)
            if isinstance(decision, Reserved):
                store.release(decision)
        return seen

    threads = [in_thread(churn) for _ in range(4)]
    time.sleep(3)
    stop.set()
    errors = []
    total = 0
    for thread, out in threads:
        thread.join(30)
        (result,) = out
        if isinstance(result, BaseException):
            errors.append(result)
        else:
            total += len(result)
    assert not errors, errors
    assert total > 50
