"""Real Celery workers on a real broker, against a PostgreSQL database they share with the test.

pytest-django's test database lives inside the test's transaction; worker processes could not see
it. These tests create a database of their own beside it (``<test database>_consumers``), migrate
it, and read it with psycopg. Each test run publishes on a queue of its own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
# .ci/run sets it: there, a missing broker or Celery fails these tests instead of skipping them.
REQUIRED = bool(os.environ.get("IDEMPOTENCY_REQUIRE_BROKER"))


def unavailable(reason):
    if REQUIRED:
        pytest.fail(f"{reason} (IDEMPOTENCY_REQUIRE_BROKER is set)")
    pytest.skip(reason)


class ConsumerDatabase:
    """A PostgreSQL database beside the test run's own: ``<name>_<suffix>``."""

    def __init__(self, url, suffix="consumers"):
        parts = urlsplit(url)
        self.name = f"{parts.path.lstrip('/')}_{suffix}"
        self.url = urlunsplit(parts._replace(path=f"/{self.name}"))
        self.admin_url = urlunsplit(parts._replace(path="/postgres"))

    def _admin(self, sql):
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(sql)

    def create_empty(self):
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self._admin(f'CREATE DATABASE "{self.name}"')

    def create(self):
        self.create_empty()
        result = subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--run-syncdb", "--noinput"],
            cwd=ROOT,
            env=worker_environment(self),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr

    def drop(self):
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def query(self, sql, params=()):
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as connection:
            cursor = connection.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def widgets(self, name):
        return self.query("SELECT count(*) FROM testapp_widget WHERE name = %s", [name])[0][0]

    def record(self, scope, key):
        rows = self.query(
            "SELECT state, response_body FROM idempotency_idempotencyrecord "
            "WHERE scope = %s AND key = %s",
            [scope, key],
        )
        return rows[0] if rows else None


def worker_environment(database, **extra):
    env = {key: value for key, value in os.environ.items() if key != "GATEWAY_DATABASE_URL"}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=database.url,
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


class Worker:
    """``celery worker``: prefork, ``concurrency`` processes, in a process group of its own."""

    def __init__(self, database, queue, log, concurrency=2):
        self.queue = queue
        self.hostname = f"w{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        self.output = Path(log).with_name(f"{self.hostname.split('@')[0]}.log")
        self.env = worker_environment(
            database, IDEMPOTENCY_TEST_QUEUE=queue, IDEMPOTENCY_TEST_LOG=str(log)
        )
        self.concurrency = concurrency
        self.process = None

    def start(self):
        with self.output.open("w") as output:
            self.process = self._popen(output)
        return self

    def _popen(self, output):
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.consumers.app",
                "worker",
                "--pool=prefork",
                f"--concurrency={self.concurrency}",
                f"--hostname={self.hostname}",
                f"--queues={self.queue}",  # not the dead-letter queue
                "--without-gossip",
                "--without-mingle",
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while " ready." not in self.logs():
            assert self.process.poll() is None, f"worker exited:\n{self.logs()}"
            assert time.monotonic() < deadline, f"worker not ready:\n{self.logs()}"
            time.sleep(0.1)
        return self

    def logs(self):
        return self.output.read_text() if self.output.exists() else ""

    def kill(self):
        """SIGKILL the worker and its pool processes: nothing acknowledges, nothing cleans up."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # warm shutdown
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()


@pytest.fixture(scope="module")
def consumer_database():
    from django.db import connections

    if connections["default"].vendor != "postgresql":
        pytest.skip("needs PostgreSQL: the workers and the test share a committed database")
    try:
        import celery  # noqa: F401
    except ImportError:
        unavailable("needs Celery: pip install -e '.[celery]'")
    from tests.consumers.app import BROKER_URL

    try:
        from kombu import Connection

        with Connection(BROKER_URL, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:
        unavailable(f"needs a broker at {BROKER_URL}: {exc!r}")

    database = ConsumerDatabase(os.environ["DATABASE_URL"])
    database.create()
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture(scope="module")
def queue(consumer_database):
    """This run's queue (and its dead-letter queue), deleted afterwards."""
    from tests.consumers.app import app, configure

    name = f"idempotency-tests-{uuid.uuid4().hex[:12]}"
    configure(name)
    with app.connection_for_write() as connection:
        for declared in app.amqp.queues.values():
            declared.bind(connection.default_channel).declare()
    try:
        yield name
    finally:
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            for queue_name in (name, f"{name}.rejected"):
                channel.queue_delete(queue_name)


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory(prefix="consumers-") as directory:
        yield Path(directory)


@pytest.fixture
def start_workers(consumer_database, queue, scratch):
    """Start ``count`` workers on this run's queue; all are stopped after the test."""
    started = []

    def start(count=2):
        log = scratch / "runs.log"
        workers = [Worker(consumer_database, queue, log).start() for _ in range(count)]
        started.extend(workers)
        return [worker.wait_ready() for worker in workers]

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()


@pytest.fixture(scope="module")
def runs(scratch):
    """The task bodies' runs so far: ``[(task, event_id, hostname, pid), ...]``."""

    def read(task, event_id):
        path = scratch / "runs.log"
        lines = path.read_text().splitlines() if path.exists() else []
        found = [tuple(line.split(" ")) for line in lines]
        return [run for run in found if run[0] == task and run[1] == event_id]

    return read
