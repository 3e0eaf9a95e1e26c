"""Review 5 (2fd5af2, 5f7046d, 57001dc): defects found, each a test failing on the reviewed HEAD.

1. 5f7046d's ``_instant()`` reads every naive time as a wall time of the default time zone, and
   every aware one by its label. On MySQL/MariaDB (and SQLite) the database's clock writes and
   reads UTC (``UTC_TIMESTAMP(6)``, ``STRFTIME(... 'now')``) whatever USE_TZ and
   DATABASES['TIME_ZONE'] say: under USE_TZ=False those UTC values come back naive, under a
   DATABASES['TIME_ZONE'] they come back labelled with that zone. Read as that zone's wall
   times, two UTC times on either side of the zone's DST gap are an hour closer than they are:
   a live lease reads as run out, and a duplicate takes the key over while its holder runs.
   The wall-time comparison before 5f7046d decided these correctly.
2. 7cc7886: the mixin picks the handler (and records the method) from ``request._request``,
   not from the DRF request DRF itself dispatches on: a Request subclass, or a view, that
   overrides ``method`` (method tunnelling) now runs another handler than DRF's APIView would.
3. 38a5dad: ``snapshot`` reads ``response.headers._store`` instead of ``response.items()``,
   which is what Django's WSGI and ASGI handlers send: a response class that adds headers in
   ``items()`` sends them on the first response but its replays lack them.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections
from django.http import HttpResponse
from django.test import override_settings
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from idempotency.mixins import IdempotentMixin
from idempotency.models import IdempotencyRecord
from idempotency.responses import snapshot
from idempotency.store import InProgress, RecordStore, Reserved, _final_or_held

# --- 1. The database's clock in UTC, read as the default zone's wall times (5f7046d) ---------

# 2026-03-08 is New York's spring-forward day: its wall clocks skip 02:00-03:00. UTC's wall
# clock does not; these instants are 02:30 and 02:35 UTC, an ordinary five minutes apart.
GAP_START = datetime(2026, 3, 8, 2, 30, tzinfo=UTC)
LEASE = timedelta(minutes=55)
EXPIRY = timedelta(hours=24)


@contextmanager
def mysql_clock_at(instant: datetime):
    """MariaDB/MySQL's NOW() and UTC_TIMESTAMP() at ``instant`` for this session."""
    with connection.cursor() as cursor:
        cursor.execute("SET timestamp = %s", [int(instant.timestamp())])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET timestamp = DEFAULT")


@contextmanager
def database_time_zone(zone):
    wrapper = connections["default"]
    old = wrapper.settings_dict.get("TIME_ZONE")

    def apply(value):
        wrapper.settings_dict["TIME_ZONE"] = value
        for name in ("timezone", "timezone_name"):
            wrapper.__dict__.pop(name, None)

    apply(zone)
    try:
        yield
    finally:
        apply(old)


def _reserve(store: RecordStore, key: str):
    return store.reserve(
        scope="s",
        key=key,
        fingerprint="f" * 64,
        method="POST",
        path="/p",
        lease=LEASE,
        expiry=EXPIRY,
    )


def _live_lease_across_the_gap(key: str) -> None:
    store = RecordStore()  # the database's clock
    assert store._on_database_clock()
    with mysql_clock_at(GAP_START):
        first = _reserve(store, key)
    assert isinstance(first, Reserved)
    # Five minutes later the holder's lease has 50 minutes left: a duplicate must wait.
    with mysql_clock_at(GAP_START + timedelta(minutes=5)):
        poll = store.poll(scope="s", key=key, fingerprint="f" * 64)
        second = _reserve(store, key)
    assert second == InProgress(timedelta(minutes=50)), second
    assert poll == InProgress(timedelta(minutes=50)), poll


@pytest.mark.django_db(transaction=True)
def test_mysql_database_clock_live_lease_not_taken_over_naive_dst_zone():
    """USE_TZ=False, TIME_ZONE in a DST zone: the database's clock writes UTC_TIMESTAMP, read
    back naive; _instant() reads 02:30 as New York's (skipped) wall time and 03:25 after the
    gap, an hour closer: the lease reads as run out, and the duplicate takes the key over."""
    if connection.vendor != "mysql":
        pytest.skip("MySQL/MariaDB: its session clock can be set (SET timestamp)")
    with override_settings(USE_TZ=False, TIME_ZONE="America/New_York"):
        _live_lease_across_the_gap("gap-naive")


@pytest.mark.django_db(transaction=True)
def test_mysql_database_clock_live_lease_not_taken_over_database_time_zone():
    """USE_TZ=True with DATABASES['TIME_ZONE'] in a DST zone: Django labels the database
    clock's UTC values with that zone, and _instant() converts the labels: the same takeover."""
    if connection.vendor != "mysql":
        pytest.skip("MySQL/MariaDB: its session clock can be set (SET timestamp)")
    with override_settings(USE_TZ=True, TIME_ZONE="UTC"), database_time_zone("America/New_York"):
        _live_lease_across_the_gap("gap-aware")


@pytest.mark.django_db
def test_utc_wall_times_of_the_database_clock_keep_their_order_naive():
    """The decision alone: the database clock's naive UTC times as SQLite's STRFTIME('now')
    and MySQL's UTC_TIMESTAMP give them under USE_TZ=False. A lease until 03:25 seen at 02:35
    (UTC) is held; _final_or_held() said it was not. (PostgreSQL's driver gives wall times of
    the session's zone instead: test_review4_reserve_columns.py's fold tests.)"""
    if connection.vendor == "postgresql":
        pytest.skip("the database's clock of MySQL and SQLite")
    record = IdempotencyRecord(
        scope="s",
        key="k",
        state="in_progress",
        locked_until=datetime(2026, 3, 8, 3, 25),
        expires_at=datetime(2026, 3, 9, 2, 30),
    )
    with override_settings(USE_TZ=False, TIME_ZONE="America/New_York"):
        zone = RecordStore()._wall_zone()
        assert _final_or_held(record, datetime(2026, 3, 8, 2, 35), zone)


# --- 2. The handler and the recorded method from request._request (7cc7886) -----------------


class TunnellingRequest(Request):
    """X-HTTP-Method-Override, as a Request subclass (DRF dispatches on request.method)."""

    @property
    def method(self):  # type: ignore[override]
        return self._request.META.get("HTTP_X_HTTP_METHOD_OVERRIDE", self._request.method)


class _Handlers:
    permission_classes = [AllowAny]

    def post(self, request):
        return Response({"ran": "post"})

    def patch(self, request):
        return Response({"ran": "patch"})


class _Tunnelling(_Handlers):
    def initialize_request(self, request, *args, **kwargs):
        return TunnellingRequest(
            request,
            parsers=self.get_parsers(),
            authenticators=self.get_authenticators(),
            negotiator=self.get_content_negotiator(),
            parser_context=self.get_parser_context(request),
        )


class PlainTunnellingView(_Tunnelling, APIView):
    pass


class IdempotentTunnellingView(_Tunnelling, IdempotentMixin, APIView):
    pass


class _SetsMethodInInitial(_Handlers):
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        override = request._request.META.get("HTTP_X_HTTP_METHOD_OVERRIDE")
        if override:
            request.method = override


class PlainInitialView(_SetsMethodInInitial, APIView):
    pass


class IdempotentInitialView(_SetsMethodInInitial, IdempotentMixin, APIView):
    pass


def _tunnelled_post(view, key):
    request = APIRequestFactory().post(
        "/t",
        {"a": 1},
        format="json",
        headers={"Idempotency-Key": key, "X-HTTP-Method-Override": "PATCH"},
    )
    return view.as_view()(request)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("plain", "idempotent"),
    [
        (PlainTunnellingView, IdempotentTunnellingView),
        (PlainInitialView, IdempotentInitialView),
    ],
    ids=["request-subclass", "set-in-initial"],
)
def test_the_mixin_runs_the_handler_drf_dispatches_to(plain, idempotent):
    assert _tunnelled_post(plain, "k-plain").data == {"ran": "patch"}
    response = _tunnelled_post(idempotent, f"k-{idempotent.__name__}")
    assert response.data == {"ran": "patch"}
    record = IdempotencyRecord.objects.get(key=f"k-{idempotent.__name__}")
    assert record.method == "PATCH"


# --- 3. snapshot's headers from the header store, not items() (38a5dad) ----------------------


class SignedResponse(HttpResponse):
    """Adds a header as it is sent: Django's WSGI and ASGI handlers send response.items()."""

    def items(self):
        return [*super().items(), ("X-Signature", "sig-1")]


def test_snapshot_keeps_the_headers_the_handlers_send():
    response = SignedResponse(b"{}", content_type="application/json", status=201)
    replayed = frozenset({"content-type", "x-signature"})
    sent = [(name, value) for name, value in response.items() if name.lower() in replayed]
    assert snapshot(response, replayed).headers == sent
