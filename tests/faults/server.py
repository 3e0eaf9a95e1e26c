"""The demo as production runs it: gunicorn worker processes on a PostgreSQL database of its own.

Plain stdlib HTTP (``http.client``), one connection per request, so concurrent requests really
are concurrent connections that the workers accept one by one.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parents[2]
PORTS = range(18000, 18100)  # this suite's share of the machine's ports
GUNICORN_CONF = Path(__file__).with_name("gunicorn_conf.py")


@dataclass
class Answer:
    status: int
    headers: Message
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def replayed(self):
        return self.headers.get("Idempotent-Replayed") == "true"


class DemoDatabase:
    """A database beside the test run's own: ``<name>_processes``, on PostgreSQL or MariaDB/MySQL.

    ``query`` takes ``%s`` placeholders on both; write ``{key}`` for the records' ``key`` column,
    a reserved word on MySQL.
    """

    def __init__(self, url):
        parts = urlsplit(url)
        self.vendor = "mysql" if parts.scheme.startswith(("mysql", "mariadb")) else "postgresql"
        self.name = f"{parts.path.lstrip('/')}_processes"
        self.url = urlunsplit(parts._replace(path=f"/{self.name}"))
        admin_database = "mysql" if self.vendor == "mysql" else "postgres"
        self.admin_url = urlunsplit(parts._replace(path=f"/{admin_database}"))

    def _connect(self, url):
        if self.vendor == "postgresql":
            return psycopg.connect(url, autocommit=True)
        import MySQLdb  # the MariaDB run's driver (mysqlclient)

        parts = urlsplit(url)
        connection = MySQLdb.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=parts.username or "root",
            password=parts.password or "",
            database=parts.path.lstrip("/"),
            charset="utf8mb4",
        )
        connection.autocommit(True)
        return contextlib.closing(connection)

    def _run(self, url, sql, params=()):
        with self._connect(url) as connection:
            cursor = connection.cursor()
            cursor.execute(
                sql.format(key='"key"' if self.vendor == "postgresql" else "`key`"), params or None
            )
            return cursor.fetchall() if cursor.description else []

    def create(self):
        self.drop()
        self._run(self.admin_url, f"CREATE DATABASE {self._quoted_name()}")

    def drop(self):
        force = " WITH (FORCE)" if self.vendor == "postgresql" else ""
        self._run(self.admin_url, f"DROP DATABASE IF EXISTS {self._quoted_name()}{force}")

    def _quoted_name(self):
        return f'"{self.name}"' if self.vendor == "postgresql" else f"`{self.name}`"

    def query(self, sql, params=()):
        return list(self._run(self.url, sql, params))

    def value(self, sql, params=()):
        return self.query(sql, params)[0][0]

    def clear(self):
        """Forget what earlier tests did: charges, payments, records."""
        tables = "gateway_charge, payments_payment, idempotency_idempotencyrecord"
        if self.vendor == "postgresql":
            self.query(f"TRUNCATE {tables}")
            return
        with self._connect(self.url) as connection:  # MySQL truncates one table at a time
            cursor = connection.cursor()
            cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
            for table in tables.split(", "):
                cursor.execute(f"TRUNCATE {table}")


def demo_environment(database, **extra):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"GATEWAY_DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=database.url,
        DEBUG="false",
        SECRET_KEY="fault-tests-only-not-a-secret",
        ALLOWED_HOSTS="127.0.0.1",
        DEMO_FAULTS="true",
        **extra,
    )
    return env


def manage(env, *args):
    """Run ``manage.py`` as an operator would; return its stdout."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def prepare(database):
    """Create, migrate and load the demo database; return the API tokens of u1 and u2."""
    database.create()
    env = demo_environment(database)
    manage(env, "migrate", "--noinput")
    manage(env, "migrate", "--database", "gateway", "--noinput")
    manage(env, "load_demo_data")
    return {user: manage(env, "issue_token", user).strip() for user in ("u1", "u2")}


def free_port():
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS}")


class DemoServer:
    """``gunicorn config.wsgi`` with ``workers`` workers; ``lease`` in seconds.

    ``threads`` above 1 runs gthread workers; ``environment`` adds settings of the demo's.
    """

    def __init__(self, database, *, workers, lease, threads=1, environment=None):
        self.database = database
        self.workers = workers
        self.lease = lease
        self.threads = threads
        self.environment = environment or {}
        self.scratch = tempfile.TemporaryDirectory(prefix="faults-")
        self.pid_dir = Path(self.scratch.name, "pids")
        self.pid_dir.mkdir()
        self.log = Path(self.scratch.name, "gunicorn.log")
        self.process = None
        self.port = None

    def start(self):
        self.port = free_port()
        env = demo_environment(
            self.database,
            IDEMPOTENCY_LEASE_SECONDS=str(self.lease),
            FAULTS_PID_DIR=str(self.pid_dir),
            **self.environment,
        )
        command = [
            sys.executable, "-m", "gunicorn", "config.wsgi:application",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(self.workers),
            "--worker-class", "sync" if self.threads == 1 else "gthread",
            "--threads", str(self.threads),
            "--config", str(GUNICORN_CONF),
            "--timeout", "30",
            "--graceful-timeout", "5",
            "--log-level", "warning",
        ]  # fmt: skip
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        self._wait_until_serving()
        return self

    def _wait_until_serving(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.log.read_text()}")
            try:
                if self.request("GET", "/products", timeout=2).status == 401:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer in {timeout} s:\n{self.log.read_text()}")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.scratch.cleanup()

    def worker_pids(self):
        """The master's live children, from /proc (the 4th field of /proc/<pid>/stat)."""
        pids = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process ended meanwhile
            if int(fields[1]) == self.process.pid and fields[0] != "Z":
                pids.add(int(stat.parent.name))
        return pids

    def worker_pid_for(self, key):
        """The pid of the worker that last took a request with ``key`` (None if none did)."""
        path = self.pid_dir / hashlib.sha256(key.encode()).hexdigest()
        return int(path.read_text()) if path.exists() else None

    def request(
        self, method, path, body=None, *, token=None, key=None, fault=None, timeout=30.0,
        headers=None, raw=None,
    ):  # fmt: skip
        """Send one request on a new connection; ``raw`` (bytes) is sent as the body as is."""
        sent = {"Connection": "close"}
        if body is not None or raw is not None:
            sent["Content-Type"] = "application/json"
        if token is not None:
            sent["Authorization"] = f"Token {token}"
        if key is not None:
            sent["Idempotency-Key"] = key
        if fault is not None:
            sent["X-Demo-Fault"] = fault
        sent.update(headers or {})
        payload = raw if raw is not None else None if body is None else json.dumps(body).encode()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=payload, headers=sent)
            response = connection.getresponse()
            return Answer(response.status, response.headers, response.read())
        finally:
            connection.close()
