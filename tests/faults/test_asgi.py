"""Async views under a real ASGI server: uvicorn worker processes on PostgreSQL.

50 concurrent duplicates of an async payment-like operation (an awaited ORM write, then half a
second of awaited work) run it once; every other duplicate is told to wait or gets its replay.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.faults.server import ROOT, DemoDatabase, free_port
from tests.faults.test_processes import race

pytestmark = [pytest.mark.row_locks, pytest.mark.processes]


@pytest.fixture(scope="module")
def asgi_server():
    database = DemoDatabase(os.environ["DATABASE_URL"])
    database.name = database.name.replace("_processes", "_asgi")
    database.url = database.url.replace("_processes", "_asgi")
    database.create()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database.url,
        "SECRET_KEY": "asgi-tests-only-not-a-secret",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--run-syncdb", "--noinput"],
        cwd=ROOT, env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "tests.asgi:application",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
            "--log-level", "warning",
        ],
        cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                import http.client

                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                try:
                    connection.request("GET", "/readiness-probe")  # any answer will do
                    connection.getresponse().read()
                finally:
                    connection.close()
                break
            except OSError:
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.2)
        yield port, database
    finally:
        process.terminate()
        process.wait(15)
        database.drop()


def test_50_concurrent_duplicates_of_an_async_view_run_it_once(asgi_server):
    import http.client
    import json

    port, database = asgi_server
    body = json.dumps({"name": "async", "sleep": 0.5})

    def send(_):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request(
                "POST",
                "/async/widgets",
                body=body,
                headers={"Content-Type": "application/json", "Idempotency-Key": "asgi-1"},
            )
            response = connection.getresponse()
            return response.status, response.getheader("Idempotent-Replayed"), response.read()
        finally:
            connection.close()

    answers = race(50, send)
    statuses = Counter(status for status, _, _ in answers)
    print(f"\n50 duplicates under uvicorn: {dict(statuses)}")

    assert set(statuses) <= {201, 409}, statuses
    originals = [body for status, replayed, body in answers if status == 201 and not replayed]
    assert len(originals) == 1
    assert database.value("SELECT count(*) FROM testapp_widget WHERE name = 'async'") == 1
    assert (
        database.value(
            "SELECT count(*) FROM idempotency_idempotencyrecord WHERE state = 'completed'"
        )
        == 1
    )
