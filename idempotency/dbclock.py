"""One clock for every app server: the database's.

Leases, takeovers and expiry compare times that different hosts wrote. With each host's own
clock, skew between them moved every deadline: a host whose clock ran 90 s fast took over a live
holder's key. So the store writes deadlines as ``now() + interval`` in its statements and reads
the database's ``now()`` in the same statement as the row it decides on. The store's injectable
clock (tests) replaces it; databases without one here fall back to the app server's clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.dateparse import parse_datetime


@dataclass(frozen=True)
class DatabaseClock:
    # The current time, in UTC where the column type has no time zone.
    now: str
    # ``now`` plus one ``%s`` interval parameter, as ``interval`` converts a timedelta.
    later: str
    interval: Callable[[timedelta], Any]
    # The same interval as SQL text, written where ``later`` has its ``%s``.
    literal: Callable[[timedelta], str]

    def later_by(self, duration: timedelta) -> str:
        """``later`` with ``duration`` written into it: no parameter to adapt per call."""
        before, _, after = self.later.partition("%s")
        return f"{before}{self.literal(duration)}{after}"


def _microseconds(duration: timedelta) -> int:
    return duration // timedelta(microseconds=1)


def _sqlite_modifier(duration: timedelta) -> str:
    return f"{duration.total_seconds():+.6f} seconds"


def postgresql_interval(duration: timedelta) -> str:
    # Days, seconds and microseconds, as psycopg writes a timedelta parameter: the same time.
    days, seconds, microseconds = duration.days, duration.seconds, duration.microseconds
    return f"INTERVAL '{days} days {seconds} seconds {microseconds} microseconds'"


# SQLite's file lives on one host, whose clock every process shares; STRFTIME reads it there
# all the same, so that one code path serves every database. '%%' is a literal '%' beside
# parameters.
_SQLITE_NOW = "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now')"
CLOCKS: dict[str, DatabaseClock] = {
    # The statement's start (not the transaction's, as now() would be).
    "postgresql": DatabaseClock(
        "STATEMENT_TIMESTAMP()",
        "(STATEMENT_TIMESTAMP() + %s)",
        lambda d: d,
        postgresql_interval,
    ),
    # UTC_TIMESTAMP, not CURRENT_TIMESTAMP: Django stores UTC in DATETIME columns, whatever the
    # session's time_zone.
    "mysql": DatabaseClock(
        "UTC_TIMESTAMP(6)",
        "(UTC_TIMESTAMP(6) + INTERVAL %s MICROSECOND)",
        _microseconds,
        lambda d: str(_microseconds(d)),
    ),
    "sqlite": DatabaseClock(
        _SQLITE_NOW,
        "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now', %s)",
        _sqlite_modifier,
        lambda d: f"'{_sqlite_modifier(d)}'",
    ),
}


def database_clock(connection: BaseDatabaseWrapper) -> DatabaseClock | None:
    return CLOCKS.get(connection.vendor)


class DatabaseNow(Now):
    """The database's current time, read in the same statement as the rows it decides on.

    Django's ``Now`` (STATEMENT_TIMESTAMP(), SQLite's STRFTIME), but in UTC on MySQL, as
    :data:`CLOCKS` writes it.
    """

    def as_mysql(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        return self.as_sql(compiler, connection, template=CLOCKS["mysql"].now, **extra_context)


def database_now(using: str) -> datetime:
    """The database's now, read on its own (the purge's cutoff, the ORM fallback's INSERT)."""
    connection = connections[using]
    clock = database_clock(connection)
    if clock is None:
        return timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {clock.now}", [])
        (value,) = cursor.fetchone()
    if isinstance(value, str):  # SQLite
        parsed = parse_datetime(value)
        assert parsed is not None
        value = parsed
    if settings.USE_TZ and timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)  # MySQL's UTC_TIMESTAMP, SQLite's 'now'
    return value  # type: ignore[no-any-return]
