from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from rest_framework.test import APIClient

from idempotency.store import RecordStore
from tests.testapp.views import Operation

# Databases whose row locks and concurrent writers the races run against (``row_locks``).
ROW_LOCK_VENDORS = {"postgresql", "mysql"}


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def pytest_collection_modifyitems(config, items):
    from django.db import connections

    vendor = connections["default"].vendor
    skip = pytest.mark.skip(reason=f"needs PostgreSQL (DATABASE_URL is {vendor})")
    no_row_locks = pytest.mark.skip(reason=f"needs real row locks (DATABASE_URL is {vendor})")
    for item in items:
        if "postgres" in item.keywords and vendor != "postgresql":
            item.add_marker(skip)
        elif "row_locks" in item.keywords and vendor not in ROW_LOCK_VENDORS:
            item.add_marker(no_row_locks)
        elif "not_mysql" in item.keywords and vendor == "mysql":
            item.add_marker(pytest.mark.skip(reason="adds nothing on MySQL/MariaDB"))


@pytest.fixture(autouse=True)
def _reset_operation_counter():
    Operation.calls = 0
    yield


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def clocked_store(clock, monkeypatch):
    """Every protected view uses a store on the fake clock."""
    from idempotency.mixins import IdempotentMixin

    store = RecordStore(clock=clock)
    monkeypatch.setattr(IdempotentMixin, "idempotency_store", store)
    return store


@pytest.fixture
def on_postgres():
    assert connection.vendor == "postgresql"
