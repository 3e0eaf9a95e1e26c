from __future__ import annotations

import os

import pytest

from tests.faults.server import DemoDatabase, DemoServer, prepare

# Long enough for the slow fault (about 1 s) to finish within it; short enough that a test
# can wait for a killed worker's lease to run out.
LEASE_SECONDS = 2.5
# Shorter than the slow fault: a slow attempt loses its key to a retry while it still runs.
SHORT_LEASE_SECONDS = 0.5


@pytest.fixture(scope="module")
def demo_database():
    database = DemoDatabase(os.environ["DATABASE_URL"])
    database.tokens = prepare(database)
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture(scope="module")
def demo_server(demo_database):
    """The demo under gunicorn: 4 sync worker processes, DEBUG off, faults on."""
    server = DemoServer(demo_database, workers=4, lease=LEASE_SECONDS)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def short_lease_server(demo_database):
    server = DemoServer(demo_database, workers=2, lease=SHORT_LEASE_SECONDS)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def clean(demo_database):
    demo_database.clear()
    return demo_database
