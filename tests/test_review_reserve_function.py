"""Hostile review of commit 9a9c195 (PostgreSQL's reserve function ``idempotency_reserve_v1``).

Every test here but the last failed on that commit and passes since the lookup runs as Django's
own cursor runs a statement and asks for the EXECUTE privilege.
"""

from __future__ import annotations

import threading
from contextlib import suppress
from typing import Any

import pytest
from django.db import DatabaseError, close_old_connections, connection, connections, transaction
from django.urls import include, path
from rest_framework.test import APIClient

from idempotency import reserve_function
from idempotency.models import IdempotencyRecord
from idempotency.store import RecordStore, Replay, Reserved, StoredResponse
from tests.test_database_loss import terminate
from tests.test_store import reserve
from tests.testapp.views import Operation

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]

urlpatterns = [path("", include("tests.urls"))]


@pytest.fixture(autouse=True)
def cold_lookup():
    """A process that has not looked the function up yet (a new worker, or any process after
    ``migrate`` sent post_migrate): the first reservation runs the lookup."""
    reserve_function.forget()
    yield
    reserve_function.forget()


def post(api: APIClient, body: dict[str, Any], key: str = "k") -> Any:
    return api.post("/test/widgets", body, format="json", headers={"Idempotency-Key": key})


class Worker(threading.Thread):
    """One server thread: its own Django connection, with ``settings`` for it (persistent
    connections, health checks), and Django's request boundaries (``close_old_connections`` on
    request_started and request_finished, which the test client leaves out)."""

    def __init__(self, requests: int, **settings: Any) -> None:
        super().__init__()
        self.requests = requests
        self.settings = settings
        self.results: list[Any] = []
        self.pid: int | None = None
        self.ready = threading.Event()
        self.proceed = threading.Event()

    def run(self) -> None:
        api = APIClient()
        api.raise_request_exception = False  # a 500 is an answer too, as a real server gives
        try:
            connection.settings_dict = {**connection.settings_dict, **self.settings}
            with connection.cursor() as cursor:  # an earlier request left the connection open
                cursor.execute("SELECT pg_backend_pid()")
                self.pid = cursor.fetchone()[0]
            close_old_connections()  # that request ended
            self.ready.set()
            self.proceed.wait(10)
            for _ in range(self.requests):
                close_old_connections()  # request_started
                try:
                    self.results.append(post(api, {"name": "a"}))
                except BaseException as error:  # reported to the test
                    self.results.append(error)
                close_old_connections()  # request_finished
        finally:
            self.ready.set()
            connections.close_all()


def run_after_the_database_restarted(worker: Worker) -> list[Any]:
    """The worker's idle connection is terminated (a restart, a failover, an idle timeout),
    then it serves its requests."""
    worker.start()
    assert worker.ready.wait(10)
    assert worker.pid is not None
    terminate(worker.pid, when_state="idle")
    worker.proceed.set()
    worker.join(30)
    assert not worker.is_alive()
    return worker.results


def status(result: Any) -> Any:
    return getattr(result, "status_code", repr(result))


@pytest.mark.postgres
def test_lost_connection_at_the_first_lookup_answers_503_and_the_retry_reconnects():
    """docs: a database failure in the reservation is a 503 and the retry reconnects
    (tests/test_database_loss.py). The lookup runs on the driver's cursor, outside Django's
    error wrapper: the driver's own error (psycopg.errors.AdminShutdown, no django.db
    OperationalError) escapes as a 500, and Django never learns the connection failed
    (``errors_occurred``), so a persistent connection is kept and the retry's lookup fails on it
    again: the worker answers 500 to every idempotent request until CONN_MAX_AGE runs out."""
    worker = Worker(requests=2, CONN_MAX_AGE=600)
    first, retry = run_after_the_database_restarted(worker)

    assert status(first) == 503
    assert status(retry) == 201
    assert Operation.calls == 1
    assert IdempotencyRecord.objects.get().state == "completed"


@pytest.mark.postgres
def test_conn_health_checks_replace_a_dead_persistent_connection_before_the_lookup():
    """CONN_HEALTH_CHECKS=True: Django checks a persistent connection at the first cursor of a
    request and reconnects, so the first request after a database restart succeeds. The lookup
    calls ensure_connection() and the driver's cursor, skipping the health check: the first
    idempotent request of a worker (or after any migrate) fails on the dead connection."""
    worker = Worker(requests=1, CONN_MAX_AGE=600, CONN_HEALTH_CHECKS=True)
    (first,) = run_after_the_database_restarted(worker)

    assert status(first) == 201
    assert Operation.calls == 1


APP_ROLE = "idem_rv_app"


@pytest.fixture
def least_privileged_app_role():
    """The web app's role is not the one that ran the migrations: it holds the table's
    privileges (DML, the id sequence) and nothing else. Functions are created without EXECUTE
    for PUBLIC, as ``ALTER DEFAULT PRIVILEGES ... REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC``
    (a common hardening) makes every new function."""
    from idempotency.reserve_function import SIGNATURE

    table = IdempotencyRecord._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"DROP ROLE IF EXISTS {APP_ROLE}")
        cursor.execute(f"CREATE ROLE {APP_ROLE} NOLOGIN")
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
        cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        cursor.execute(f"GRANT USAGE, SELECT ON SEQUENCE {table}_id_seq TO {APP_ROLE}")
        cursor.execute(f"REVOKE EXECUTE ON FUNCTION {SIGNATURE} FROM PUBLIC")
        cursor.execute(f"SET ROLE {APP_ROLE}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
            cursor.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO PUBLIC")
            cursor.execute(f"DROP OWNED BY {APP_ROLE}")
            cursor.execute(f"DROP ROLE {APP_ROLE}")


@pytest.mark.postgres
def test_an_app_role_without_execute_on_the_function_still_reserves(least_privileged_app_role):
    """Before 9a9c195 the app's role needed the table's privileges only. The lookup
    (to_regprocedure) finds the function whether or not the role may call it, so the store
    calls it, gets ``permission denied for function idempotency_reserve_v1`` (42501, not the
    42883 that ``missing`` falls back on) and raises: every reservation fails, every time."""
    store = RecordStore()
    held = reserve(store)
    assert isinstance(held, Reserved)
    outcome = StoredResponse(201, [], b"{}")
    store.complete(held, outcome)
    assert reserve(store) == Replay(outcome)


@pytest.mark.postgres
def test_the_lookup_in_a_broken_transaction_raises_djangos_database_error():
    """A caller's transaction that a caught statement broke (no savepoint): the reservation's
    first statement fails, as before, with django.db.InternalError (a DatabaseError, which
    callers and the library catch). The lookup's driver cursor raises psycopg's own
    InFailedSqlTransaction instead, which no ``except DatabaseError`` catches."""
    store = RecordStore()
    with transaction.atomic():
        # Caught without a savepoint: the transaction is broken.
        with connection.cursor() as cursor, suppress(DatabaseError):
            cursor.execute("SELECT 1 / 0")
        try:
            reserve(store)
        except Exception as error:  # noqa: BLE001 - the type is what is checked
            raised = error
        transaction.set_rollback(True)
    assert isinstance(raised, DatabaseError), f"{type(raised).__module__}.{type(raised).__name__}"


@pytest.mark.postgres
def test_execute_revoked_after_the_lookup_falls_back_outside_a_transaction(
    least_privileged_app_role,
):
    """Found callable before the REVOKE: the call's 42501 tells the store to use the two
    statements, which the role's table privileges allow."""
    reserve_function._found[reserve_function._database(connection)] = True
    store = RecordStore()
    held = reserve(store)
    assert isinstance(held, Reserved)
    assert reserve_function.available(connection) is False
