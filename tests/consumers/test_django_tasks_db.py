"""idempotent_task under django-tasks-db's DatabaseBackend: one event enqueued 20 times, run by two
`db_worker` processes at once, on a database of its own (PostgreSQL beside the test database, or
an SQLite file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("django.tasks", reason="django.tasks needs Django 6.0 or later")
pytest.importorskip("django_tasks_db", reason="needs django-tasks-db (the test extra)")

from django.db import connections  # noqa: E402

from tests.consumers.conftest import ROOT, ConsumerDatabase  # noqa: E402


@pytest.fixture
def database_url(tmp_path):
    if connections["default"].vendor != "postgresql":
        yield f"sqlite:///{tmp_path / 'tasks.sqlite3'}"
        return
    database = ConsumerDatabase(os.environ["DATABASE_URL"], suffix="tasks")
    database.create_empty()
    try:
        yield database.url
    finally:
        database.drop()


def django(url, *args, wait=True):
    env = {key: value for key, value in os.environ.items() if key != "GATEWAY_DATABASE_URL"}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.consumers.tasks_settings",
        DATABASE_URL=url,
        PYTHONPATH=str(ROOT),
    )
    command = [sys.executable, "-m", "django", *args]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if not wait:
        return process
    return finished(process)


def finished(process):
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr
    return stdout


def test_one_event_enqueued_20_times_runs_once_across_two_db_workers(database_url):
    django(database_url, "migrate", "--run-syncdb", "--noinput")
    django(
        database_url,
        "shell",
        "-c",
        "from tests.consumers.db_tasks import enqueue; enqueue('evt_1', 20)",
    )

    workers = [
        django(database_url, "db_worker", "--batch", "--no-startup-delay", wait=False)
        for _ in range(2)
    ]
    for worker in workers:
        finished(worker)

    report = json.loads(
        django(
            database_url,
            "shell",
            "-c",
            "from tests.consumers.db_tasks import report; report('evt_1')",
        ).splitlines()[-1]
    )
    assert report["widgets"] == 1
    # Each run either did the work, replayed it, or met the key held by the other worker.
    assert len(report["statuses"]) == 20
    assert set(report["statuses"]) <= {"SUCCESSFUL", "FAILED"}
    assert len(report["values"]) == 1
    assert set(report["errors"]) <= {"idempotency.exceptions.IdempotencyKeyInUse"}
