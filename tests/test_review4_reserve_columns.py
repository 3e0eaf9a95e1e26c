"""Review 4 (e2bdf97, dcd6f49): PostgreSQL's reservation call returns a taken key's row as one
JSON array; the record Python rebuilds from it must be the record the function's own columns
give through Django's loaders and the ORM's converters, and every decision must stay the same."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, connections
from django.test import override_settings

from idempotency import reserve_function
from idempotency.models import IdempotencyRecord
from idempotency.rows import record_from_row, record_from_values
from idempotency.statements import record_statements
from idempotency.store import InProgress, RecordStore, Replay, Reserved, StoredResponse

LEASE = timedelta(seconds=60)
EXPIRY = timedelta(hours=1)
NAMES = [field.attname for field in IdempotencyRecord._meta.concrete_fields]


def reserve(store, key="k", fingerprint="f", lease=LEASE, expiry=EXPIRY, path="/p"):
    return store.reserve(
        scope="s",
        key=key,
        fingerprint=fingerprint,
        method="POST",
        path=path,
        lease=lease,
        expiry=expiry,
    )


def both_records(key, *, clock_given=False, now=None):
    """The taken key's record as the store builds it (the function's JSON array) and as the
    plain read's columns give it through Django's loaders and the ORM's converters."""
    call = reserve_function.call(clock_given=clock_given, lease=LEASE, keep=EXPIRY)
    arguments = ["s", key, "f", "POST", "/p", None]
    if clock_given:
        arguments.append(now)
    with connection.cursor() as cursor:
        cursor.execute(call, arguments)
        record_id, taken = cursor.fetchone()
        cursor.execute(record_statements("default").read[not clock_given], ["s", key])
        plain = cursor.fetchone()
    assert record_id == plain[0]
    values = reserve_function.taken_values(connection, taken)
    got = record_from_values("default", "s", key, [record_id, *values])
    want = record_from_row(connection, "default", "s", key, plain)
    return got, want


def assert_same(got, want, names=NAMES):
    for name in names:
        mine, theirs = getattr(got, name), getattr(want, name)
        assert (mine, type(mine)) == (theirs, type(theirs)), name
        if isinstance(mine, datetime):
            assert mine.tzinfo is theirs.tzinfo or mine.tzinfo == theirs.tzinfo, name
            # == between datetimes of one tzinfo ignores fold: compare it, and the offset.
            assert mine.fold == theirs.fold, (name, mine, theirs)
            assert mine.utcoffset() == theirs.utcoffset(), name


def put_row(key, *, locked_until, expires_at, state="in_progress", **extra):
    IdempotencyRecord.objects.filter(scope="s", key=key).delete()
    created = expires_at if expires_at is not None else locked_until
    IdempotencyRecord.objects.create(
        scope="s",
        key=key,
        fingerprint="f",
        method="POST",
        path="/p",
        state=state,
        locked_until=locked_until,
        created_at=created,
        expires_at=expires_at,
        **extra,
    )


def put_raw(key, *, expires_at, locked_until, created_at="now()"):
    """An in-progress row of ``key`` with its times given as SQL (timestamptz literals in UTC
    mean the same instant under any zone)."""
    IdempotencyRecord.objects.filter(scope="s", key=key).delete()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO idempotency_idempotencyrecord (scope, key, fingerprint, method, path, "
            "state, response_headers, response_body, created_at, expires_at, locked_until) "
            f"VALUES ('s', %s, 'f', 'POST', '/p', 'in_progress', '[]', '', {created_at}, "
            f"{expires_at}, {locked_until})",
            [key],
        )


def set_times_sql(key, locked_until_sql, expires_at_sql):
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE idempotency_idempotencyrecord SET locked_until = "
            f"{locked_until_sql}, expires_at = {expires_at_sql} WHERE scope = 's' AND key = %s",
            [key],
        )


@contextmanager
def database_time_zone(zone):
    """DATABASES['default']['TIME_ZONE'] = zone for the block (USE_TZ on)."""
    wrapper = connections["default"]
    old = wrapper.settings_dict["TIME_ZONE"]

    def apply(value):
        wrapper.settings_dict["TIME_ZONE"] = value
        for name in ("timezone", "timezone_name"):
            wrapper.__dict__.pop(name, None)
        wrapper.ensure_timezone()

    apply(zone)
    try:
        yield
    finally:
        apply(old)


# Instants given as SQL timestamptz literals (UTC), so that they mean the same under any zone.
INSTANTS = {
    "nyc-fold-first": "'2024-11-03 05:30:00+00'",  # 01:30 EDT
    "nyc-fold-second": "'2024-11-03 06:30:00+00'",  # 01:30 EST (fold=1)
    "nyc-gap-edge": "'2024-03-10 06:59:59.999999+00'",  # 01:59:59.999999 EST
    "pre-epoch": "'1969-12-31 23:59:59.999999+00'",
    "lmt-1850": "'1850-06-01 12:00:00.000001+00'",
    "far-future": "'9000-01-01 00:00:00.5+00'",
    "micro-round": "'2026-01-01 00:00:00.000001+00'",
    "lord-howe-fold": "'2024-04-06 15:15:00+00'",  # 02:15 in the half-hour fold (second)
}

ZONES = [
    {"USE_TZ": True, "TIME_ZONE": "UTC"},
    {"USE_TZ": False, "TIME_ZONE": "America/New_York"},
    {"USE_TZ": False, "TIME_ZONE": "Europe/Amsterdam"},
    {"USE_TZ": False, "TIME_ZONE": "Australia/Lord_Howe"},
    {"USE_TZ": False, "TIME_ZONE": "Asia/Kathmandu"},
]


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("zones", ZONES, ids=lambda z: f"{z['USE_TZ']}-{z['TIME_ZONE']}")
@pytest.mark.parametrize("instant", sorted(INSTANTS))
def test_edge_instants_rebuild_to_the_orm_record(zones, instant):
    with override_settings(**zones):
        put_raw("edge", expires_at=INSTANTS[instant], locked_until=INSTANTS[instant])
        got, want = both_records("edge")
        assert_same(got, want)


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("zone", ["America/New_York", "Australia/Lord_Howe", "Europe/London"])
@pytest.mark.parametrize("instant", sorted(INSTANTS))
def test_database_time_zone_under_use_tz(zone, instant):
    """DATABASES['TIME_ZONE'] (allowed with USE_TZ on PostgreSQL): the session's zone and
    Django's loader's."""
    with override_settings(USE_TZ=True, TIME_ZONE="UTC"), database_time_zone(zone):
        put_raw("edge", expires_at=INSTANTS[instant], locked_until=INSTANTS[instant])
        got, want = both_records("edge")
        assert_same(got, want)


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("zones", ZONES, ids=lambda z: f"{z['USE_TZ']}-{z['TIME_ZONE']}")
def test_naive_fold_second_occurrence_is_lost(zones):
    """Under USE_TZ=False Django's loader gives the session's wall time of the instant, with
    fold=1 for the second occurrence of a repeated hour (psycopg's astimezone): the rebuilt
    record's naive times always have fold=0, so make_aware() of them (what Django does with a
    naive datetime) names an instant an hour earlier than the row's."""
    from django.utils import timezone

    with override_settings(**zones):
        put_raw(
            "fold", expires_at=INSTANTS["nyc-fold-second"], locked_until=INSTANTS["lord-howe-fold"]
        )
        got, want = both_records("fold")
        for name in ("locked_until", "expires_at"):
            mine, theirs = getattr(got, name), getattr(want, name)
            if theirs.tzinfo is None:
                zone = ZoneInfo(settings.TIME_ZONE)
                # The instants Django's make_aware() gives (compared in UTC: == between two
                # datetimes of one tzinfo ignores fold).
                assert timezone.make_aware(mine, zone).astimezone(UTC) == timezone.make_aware(
                    theirs, zone
                ).astimezone(UTC), name


def extra_alias(name, options=None):
    """A connection alias to database ``name`` on the same server (made by ``made_databases``)."""
    alias = f"review4_{name}"
    settings_dict = dict(connections["default"].settings_dict)
    settings_dict["NAME"] = name
    settings_dict["OPTIONS"] = dict(options or settings_dict.get("OPTIONS") or {})
    connections.settings[alias] = settings_dict
    # Connected here: the test case's guard refuses to open a connection for an alias it was
    # not told about (it only checks while there is none).
    connections[alias].connect()
    return alias


ENCODINGS = {"sql_ascii": "SQL_ASCII", "latin1": "LATIN1", "ssb": "UTF8"}


@pytest.fixture(scope="module")
def made_databases(django_db_setup, django_db_blocker):
    """Databases beside the test database, in other server encodings (and one for server-side
    binding), created and migrated here; dropped afterwards. Their names: by suffix."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's server encodings")
    base = connections["default"].settings_dict["NAME"]
    names = {suffix: f"{base}_{suffix}" for suffix in ENCODINGS}
    with django_db_blocker.unblock():

        def run(sql):
            with connection.cursor() as cursor:
                cursor.execute(sql)

        for suffix, name in names.items():
            run(f"DROP DATABASE IF EXISTS {name}")
            run(
                f"CREATE DATABASE {name} WITH ENCODING '{ENCODINGS[suffix]}' "
                "LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
            )
            alias = extra_alias(name)
            try:
                call_command("migrate", database=alias, verbosity=0)
            finally:
                drop_alias(alias)
        yield names
        for name in names.values():
            run(f"DROP DATABASE IF EXISTS {name}")


def drop_alias(alias):
    wrapper = connections[alias]
    wrapper.close()
    if wrapper.connection is not None:  # close() skips a connection inside an atomic block
        wrapper.connection.close()
        wrapper.connection = None
    del connections[alias]
    del connections.settings[alias]


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("database", ["sql_ascii", "latin1"])
@pytest.mark.parametrize("use_tz", [True, False])
@pytest.mark.parametrize(
    "header", ["plain", "caf\u00e9 \u00ff"], ids=["ascii-header", "latin1-header"]
)
def test_other_server_encodings(made_databases, database, use_tz, header):
    """A database in SQL_ASCII or LATIN1: a non-ASCII path, every byte in the body, and a
    header value Django can send (latin-1)."""
    alias = extra_alias(made_databases[database])
    try:
        with override_settings(USE_TZ=use_tz, TIME_ZONE="America/New_York"):
            store = RecordStore(using=alias)
            assert reserve_function.available(connections[alias])
            IdempotencyRecord.objects.using(alias).all().delete()
            path = "/caf\u00e9/\u00ff"
            first = reserve(store, key="enc", path=path)
            assert isinstance(first, Reserved)
            held = reserve(store, key="enc", path=path)
            assert isinstance(held, InProgress)
            headers = [("Content-Type", "text/plain; charset=latin-1"), ("X-A", header)]
            body = bytes(range(256)) * 3
            store.complete(first, StoredResponse(201, headers, body))
            again = reserve(store, key="enc", path=path)
            assert again == Replay(StoredResponse(201, headers, body))
            record = IdempotencyRecord.objects.using(alias).get(key="enc")
            assert record.path == path
    finally:
        IdempotencyRecord.objects.using(alias).all().delete()
        drop_alias(alias)


def taken_at(key, db_now_sql):
    """The call's answer for a taken key as the function gives it when the database's clock
    reads ``db_now_sql``: the function's own JSON array (migration 0005) over the row."""
    sql = (
        "SELECT r.id, json_build_array(r.state, r.fingerprint, r.method, r.path, "
        "r.response_status, r.response_headers, encode(r.response_body, 'hex'), "
        "(EXTRACT(EPOCH FROM r.locked_until) * 1000000)::bigint, "
        "(EXTRACT(EPOCH FROM r.expires_at) * 1000000)::bigint, "
        f"(EXTRACT(EPOCH FROM {db_now_sql}::timestamptz) * 1000000)::bigint)::text "
        "FROM idempotency_idempotencyrecord r WHERE r.scope = 's' AND r.key = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [key])
        record_id, taken = cursor.fetchone()
    values = reserve_function.taken_values(connection, taken)
    return record_from_values("default", "s", key, [record_id, *values])


def held_across_the_fold():
    """Reserved at 05:50 UTC on 2024-11-03 (01:50 EDT) with a 30-minute lease: held until
    06:20 UTC (01:20 EST), kept until 06:50 UTC (01:50 EST). A duplicate at 05:55 UTC (01:55
    EDT), five minutes later, must be told the key is in progress for 25 more minutes."""
    from idempotency.store import _final_or_held

    put_raw(
        "dst",
        created_at="'2024-11-03 05:50+00'",
        locked_until="'2024-11-03 06:20+00'",
        expires_at="'2024-11-03 06:50+00'",
    )
    record = taken_at("dst", "'2024-11-03 05:55+00'")
    store = RecordStore()
    seen = store._now_of(record, None)
    decision = store._decide(
        record, seen, None, "f", "POST", "/p", timedelta(minutes=30), timedelta(minutes=30)
    )
    assert decision == InProgress(timedelta(minutes=25)), (record.locked_until, seen, decision)
    assert _final_or_held(record, seen, store._wall_zone())


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_live_lease_across_the_dst_fold_is_not_taken_over_naive():
    """USE_TZ=False on the database's clock: the record's times are the session's wall times,
    and the decision compares them as naive datetimes, so across the repeated hour a lease
    with 25 minutes left reads as run out (and the key as expired): the duplicate takes the
    key over while its holder runs, and the operation runs twice."""
    with override_settings(USE_TZ=False, TIME_ZONE="America/New_York"):
        held_across_the_fold()


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_live_lease_across_the_dst_fold_is_not_taken_over_database_time_zone():
    """USE_TZ=True with DATABASES['TIME_ZONE'] in a DST zone: the record's times and db_now
    share one tzinfo, and Python compares and subtracts such datetimes by wall time (fold
    ignored): the same takeover of a live lease."""
    with override_settings(USE_TZ=True, TIME_ZONE="UTC"), database_time_zone("America/New_York"):
        held_across_the_fold()


HEADERS = [
    ("Content-Type", "application/json"),
    ("X-Controls", "\x01\x07\x08\x0b\x0c\x1b\x1f\x7f\t\r\n"),
    ("X-Unicode", '\u2028\u2029 \U0001f600 \ufeff \u00e9 \\ " / </script>'),
    ("X-Empty", ""),
    ("X-Escapes", "\\u0041 \\x00 %s %% {}"),
]


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("zones", ZONES[:2], ids=["aware", "naive"])
@pytest.mark.parametrize("size", [0, 1, 256 * 4096, 5 * 1024 * 1024 + 7])
def test_bodies_and_headers_rebuild_and_replay(zones, size):
    import random

    body = bytes(range(256)) * (size // 256) + random.Random(size).randbytes(size % 256)
    with override_settings(**zones):
        store = RecordStore()
        held = reserve(store, key=f"body{size}")
        store.complete(held, StoredResponse(299, HEADERS, body))
        got, want = both_records(f"body{size}")
        assert_same(got, want)
        assert reserve(store, key=f"body{size}") == Replay(StoredResponse(299, HEADERS, body))


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("session_zone", ["Asia/Tokyo", "UTC", "America/St_Johns"])
def test_a_session_time_zone_the_user_set_naive(session_zone):
    """USE_TZ=False and a connection_created receiver that sets the session's zone: Django's
    loader gives that zone's wall time, and so does the rebuilt record."""
    with override_settings(USE_TZ=False, TIME_ZONE="America/New_York"):
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('TimeZone', %s, false)", [session_zone])
        try:
            store = RecordStore()
            held = reserve(store, key="sess")
            got, want = both_records("sess")
            assert_same(got, want)
            assert isinstance(reserve(store, key="sess"), InProgress)
            store.complete(held, StoredResponse(200, [], b"x"))
            assert reserve(store, key="sess") == Replay(StoredResponse(200, [], b"x"))
        finally:
            connections["default"].ensure_timezone()


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_session_time_zone_the_user_set_aware_gives_the_rows_instants():
    """USE_TZ=True and a session zone other than UTC: the rebuilt record's times are the row's
    instants (Django's own loader would label Tokyo's wall time as UTC)."""
    with override_settings(USE_TZ=True, TIME_ZONE="UTC"):
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('TimeZone', 'Asia/Tokyo', false)")
        try:
            put_row(
                "tok",
                locked_until=datetime(2030, 1, 1, 12, tzinfo=UTC),
                expires_at=datetime(2030, 1, 1, 13, tzinfo=UTC),
            )
            got, _want = both_records("tok")
            assert got.locked_until == datetime(2030, 1, 1, 12, tzinfo=UTC)
            assert got.locked_until.tzinfo is connection.timezone
        finally:
            connections["default"].ensure_timezone()


@pytest.mark.postgres
@pytest.mark.django_db
def test_use_tz_flips_between_calls_in_one_process():
    flips = [
        {"USE_TZ": True, "TIME_ZONE": "UTC"},
        {"USE_TZ": False, "TIME_ZONE": "Asia/Kolkata"},
        {"USE_TZ": True, "TIME_ZONE": "Europe/Paris"},
        {"USE_TZ": False, "TIME_ZONE": "America/New_York"},
    ]
    with override_settings(**flips[0]):
        store = RecordStore()
        held = reserve(store, key="flip")
        store.complete(held, StoredResponse(201, [("A", "b")], b"ok"))
    for zones in flips * 2:
        with override_settings(**zones):
            got, want = both_records("flip")
            assert_same(got, want)
            assert (got.expires_at.tzinfo is None) is not settings.USE_TZ
            assert reserve(RecordStore(), key="flip") == Replay(
                StoredResponse(201, [("A", "b")], b"ok")
            )
            assert isinstance(
                reserve(RecordStore(), key="flip", fingerprint="g"),
                type(reserve(RecordStore(), key="flip", fingerprint="h")),
            )


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("zones", ZONES[:2], ids=["aware", "naive"])
def test_the_two_statements_decide_alike_when_the_function_is_missing(zones, monkeypatch):
    from idempotency.store import Mismatch

    with override_settings(**zones):
        decisions = []
        for found in (True, False):
            monkeypatch.setitem(
                reserve_function._found, reserve_function._database(connection), found
            )
            key = f"miss{found}"
            store = RecordStore()
            held = reserve(store, key=key)
            busy = reserve(store, key=key)
            store.complete(held, StoredResponse(201, [("A", "b")], b"ok"))
            decisions.append(
                (
                    type(held),
                    type(busy),
                    reserve(store, key=key),
                    type(reserve(store, key=key, fingerprint="g")),
                )
            )
        assert decisions[0] == decisions[1]
        assert decisions[0][3] is Mismatch and decisions[0][1] is InProgress


@pytest.mark.postgres
@pytest.mark.django_db
def test_clock_injected_lease_takeover_and_expiry_reuse_naive_and_aware(clock):
    for zones, start in (
        ({"USE_TZ": True, "TIME_ZONE": "UTC"}, datetime(1969, 7, 20, 20, 17, tzinfo=UTC)),
        ({"USE_TZ": False, "TIME_ZONE": "Asia/Kolkata"}, datetime(1969, 7, 21, 1, 47)),
    ):
        with override_settings(**zones):
            clock.now = start
            store = RecordStore(clock=clock)
            key = f"clk{settings.USE_TZ}"
            first = reserve(store, key=key)
            assert isinstance(first, Reserved)
            clock.advance(seconds=59, microseconds=999999)
            assert reserve(store, key=key) == InProgress(timedelta(microseconds=1))
            clock.advance(microseconds=1)
            taken = reserve(store, key=key)
            assert isinstance(taken, Reserved) and taken.taken_over
            store.complete(taken, StoredResponse(200, [], b"x"))
            assert reserve(store, key=key) == Replay(StoredResponse(200, [], b"x"))
            clock.advance(hours=1)
            reused = reserve(store, key=key, fingerprint="other")
            assert isinstance(reused, Reserved) and not reused.taken_over


class _ToGateway:
    def db_for_write(self, model, **hints):
        return "gateway" if model is IdempotencyRecord else None

    db_for_read = db_for_write


@pytest.mark.postgres
@pytest.mark.django_db(databases=["default", "gateway"])
def test_routers_added_and_removed_at_runtime():
    with override_settings(DATABASE_ROUTERS=[]):
        assert RecordStore().using == "default"
        with override_settings(DATABASE_ROUTERS=[f"{__name__}._ToGateway"]):
            assert RecordStore().using == "gateway"
        assert RecordStore().using == "default"
    with override_settings(DATABASE_ROUTERS=[f"{__name__}._ToGateway"]):
        assert RecordStore().using == "gateway"
    assert RecordStore(using="gateway").using == "gateway"


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("zones", ZONES[:2], ids=["aware", "naive"])
def test_server_side_binding(made_databases, zones):
    """OPTIONS server_side_binding: the call's parameters bound by the server (a database of
    its own, whose connection binds that way)."""
    alias = extra_alias(made_databases["ssb"], {"server_side_binding": True})
    try:
        with override_settings(**zones):
            store = RecordStore(using=alias)
            key = f"ssb{settings.USE_TZ}"
            IdempotencyRecord.objects.using(alias).filter(key=key).delete()
            held = reserve(store, key=key)
            assert isinstance(held, Reserved)
            busy = reserve(store, key=key)
            assert isinstance(busy, InProgress)
            store.complete(held, StoredResponse(201, HEADERS, bytes(range(256))))
            again = reserve(store, key=key)
            assert again == Replay(StoredResponse(201, HEADERS, bytes(range(256))))
    finally:
        IdempotencyRecord.objects.using(alias).filter(key__startswith="ssb").delete()
        drop_alias(alias)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("zones", ZONES[:2], ids=["aware", "naive"])
def test_entry_points_replay(zones, api):
    import asyncio
    import uuid

    from idempotency.operations import arun_once, run_once

    with override_settings(**zones):
        calls = []

        def work():
            calls.append(1)
            return {"n": len(calls), "s": "\u00e9\x01"}

        assert run_once(work, scope="rev4", key="k1") == {"n": 1, "s": "\u00e9\x01"}
        assert run_once(work, scope="rev4", key="k1") == {"n": 1, "s": "\u00e9\x01"}

        async def awork():
            calls.append(1)
            return len(calls)

        first = asyncio.run(arun_once(awork, scope="rev4", key="k2"))
        assert asyncio.run(arun_once(awork, scope="rev4", key="k2")) == first
        key = str(uuid.uuid4())
        one = api.post(
            "/test/widgets/", {"name": "a"}, format="json", headers={"Idempotency-Key": key}
        )
        two = api.post(
            "/test/widgets/", {"name": "a"}, format="json", headers={"Idempotency-Key": key}
        )
        assert one.status_code == two.status_code == 201
        assert two["Idempotent-Replayed"] == "true" and two.content == one.content
        three = api.post(
            "/test/widgets/", {"name": "b"}, format="json", headers={"Idempotency-Key": key}
        )
        assert three.status_code == 422
