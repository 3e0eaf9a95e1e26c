"""Hostile review of fd3cc6b (fingerprint check), 8bd0b1f (Content-Disposition replayed) and
6c66488 (the SQLite purge takes the write lock first).

``test_finding_*`` failed on 6c66488 (the check refused storable fingerprints; it now refuses
only NUL and lone surrogates); ``test_held_*`` are the attacks that held up.
Run on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, transaction
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.test import RequestFactory
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from idempotency.decorators import idempotent
from idempotency.fingerprint_check import InvalidFingerprint
from idempotency.mixins import IdempotentMixin
from idempotency.models import IdempotencyRecord
from idempotency.operations import arun_once
from idempotency.purge import Purger
from idempotency.store import RecordStore
from tests.factories import IdempotencyRecordFactory
from tests.testapp.views import Operation, WidgetView

pytestmark = pytest.mark.django_db(transaction=True)

TOO_LONG = "f" * 65


# --- fd3cc6b: the fingerprint check ------------------------------------------------------------

# Each of these is stored and read back unchanged by PostgreSQL (varchar), MariaDB (utf8mb4) and
# SQLite, and worked before fd3cc6b; the library's own scope check (scopes._UNSTORABLE) accepts
# all but the tab in the scope column. str.isprintable() refuses every Unicode "Separator" but
# the ASCII space, and every format character: a French-formatted amount (narrow no-break space,
# Django's/Babel's fr thousands separator), a no-break space, an emoji ZWJ sequence, a tab.
STORABLE_BUT_NOT_PRINTABLE = {
    "fr-amount-narrow-nbsp": "order:1\u202f234,56\u00a0EUR",
    "nbsp": "invoice\u00a042",
    "emoji-zwj-sequence": "team:\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "tab-separated": "POST\t/orders\t42",
}


@pytest.mark.parametrize(
    "fingerprint", list(STORABLE_BUT_NOT_PRINTABLE.values()), ids=list(STORABLE_BUT_NOT_PRINTABLE)
)
def test_finding_a_storable_fingerprint_that_worked_before_is_now_refused(fingerprint):
    """A fingerprint that every database stores alike (<= 64 characters, no NUL, no lone
    surrogate) ran and replayed before the check; now every request with it is a 500."""
    calls = []

    @idempotent(fingerprint=lambda request: fingerprint)
    def view(request):
        calls.append(1)
        return HttpResponse(b"done", status=201)

    first = view(RequestFactory().post("/", HTTP_IDEMPOTENCY_KEY="k"))
    replay = view(RequestFactory().post("/", HTTP_IDEMPOTENCY_KEY="k"))
    assert first.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert calls == [1]
    assert IdempotencyRecord.objects.get().fingerprint == fingerprint


def test_held_the_async_decorator_refuses_a_bad_fingerprint_before_anything():
    calls = []

    @idempotent(fingerprint=lambda request: TOO_LONG)
    async def view(request):
        calls.append(1)
        return HttpResponse(status=201)

    with pytest.raises(InvalidFingerprint):
        async_to_sync(view)(RequestFactory().post("/", HTTP_IDEMPOTENCY_KEY="k"))
    assert calls == []
    assert IdempotencyRecord.objects.count() == 0


def test_held_the_wait_path_checks_before_polling():
    """A holder in progress, WAIT on: the duplicate with a bad fingerprint fails at once."""

    class WaitingLoose(WidgetView):
        idempotency_wait = timedelta(seconds=2)

        def get_idempotency_fingerprint(self, request):
            return ""

    store = RecordStore()
    store.reserve(
        scope="anonymous",
        key="k",
        fingerprint="a" * 64,
        method="POST",
        path="/",
        lease=timedelta(seconds=30),
        expiry=timedelta(days=1),
    )
    started = timezone.now()
    with pytest.raises(InvalidFingerprint):
        WaitingLoose.as_view()(
            APIRequestFactory().post("/", {"name": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
        )
    assert timezone.now() - started < timedelta(seconds=1)
    assert Operation.calls == 0
    assert IdempotencyRecord.objects.get().state == IdempotencyRecord.State.IN_PROGRESS


def test_held_arun_once_hashes_any_fingerprint():
    async def handle():
        return {"ok": True}

    async def twice():
        payload = {"text": "\t\u00a0" * 100}
        first = await arun_once(handle, scope="events", key="e1", fingerprint=payload)
        second = await arun_once(handle, scope="events", key="e1", fingerprint=payload)
        return first, second

    assert asyncio.run(twice()) == ({"ok": True}, {"ok": True})


# --- 8bd0b1f: Content-Disposition replayed -----------------------------------------------------


def _twice(view, path="/export"):
    first = view(RequestFactory().post(path, HTTP_IDEMPOTENCY_KEY="dl"))
    if getattr(first, "streaming", False):
        first_body = b"".join(first.streaming_content)
    else:
        first_body = first.content
    replay = view(RequestFactory().post(path, HTTP_IDEMPOTENCY_KEY="dl"))
    return first, first_body, replay


def test_held_a_file_response_replays_its_own_content_disposition():
    @idempotent
    def view(request):
        return FileResponse(
            io.BytesIO(b"a,b\n"), as_attachment=True, filename="r\u00e9sum\u00e9.csv"
        )

    first, body, replay = _twice(view)
    assert replay["Idempotent-Replayed"] == "true"
    assert replay["Content-Disposition"] == first["Content-Disposition"]
    assert replay["Content-Type"] == first["Content-Type"]
    assert replay.content == body


def test_held_a_streaming_response_from_an_async_view_replays_its_file_name():
    @idempotent
    async def view(request):
        async def chunks():
            yield b"1,"
            yield b"2\n"

        response = StreamingHttpResponse(chunks(), content_type="text/csv")
        response["content-disposition"] = 'attachment; filename="\u62a5\u544a.csv"'
        return response

    first = async_to_sync(view)(RequestFactory().post("/x", HTTP_IDEMPOTENCY_KEY="dl"))
    replay = async_to_sync(view)(RequestFactory().post("/x", HTTP_IDEMPOTENCY_KEY="dl"))
    assert replay["Idempotent-Replayed"] == "true"
    assert replay["Content-Disposition"] == first["Content-Disposition"]
    assert replay.content == b"1,2\n"


def test_held_the_mixin_replays_content_disposition_and_a_view_list_can_drop_it():
    class Export(IdempotentMixin, APIView):
        authentication_classes = ()
        permission_classes = ()

        def post(self, request):
            return Response({"ok": 1}, status=201, headers={"Content-Disposition": "inline"})

    class NoName(Export):
        idempotency_replayed_headers = ["Location"]

    request = lambda: APIRequestFactory().post(  # noqa: E731
        "/", {}, format="json", HTTP_IDEMPOTENCY_KEY="m"
    )
    Export.as_view()(request())
    assert Export.as_view()(request())["Content-Disposition"] == "inline"
    IdempotencyRecord.objects.all().delete()
    NoName.as_view()(request())
    assert not NoName.as_view()(request()).has_header("Content-Disposition")


# --- 6c66488: the purge's write lock first -----------------------------------------------------


def _expired(count):
    past = timezone.now() - timedelta(days=2)
    IdempotencyRecordFactory.create_batch(count, created_at=past, expires_at=past)


def test_held_the_purge_nested_in_a_callers_transaction_rolls_back_with_it():
    _expired(3)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        assert Purger(batch_size=2).run().deleted == 3
        raise Boom
    assert IdempotencyRecord.objects.count() == 3


def test_held_the_purge_with_a_receiver_on_every_database():
    from django.db.models.signals import post_delete

    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance.pk)

    _expired(5)
    post_delete.connect(receiver, sender=IdempotencyRecord)
    try:
        result = Purger(batch_size=2).run()
    finally:
        post_delete.disconnect(receiver, sender=IdempotencyRecord)
    assert result.deleted == 5 and len(seen) == 5
    assert IdempotencyRecord.objects.count() == 0


def test_held_store_atomic_is_a_reusable_nestable_context_and_decorator():
    store = RecordStore()
    with store.atomic():
        assert connection.in_atomic_block
        with store.atomic():
            assert len(connection.savepoint_ids) == 1
    assert not connection.in_atomic_block

    @store.atomic()
    def inside():
        return connection.in_atomic_block

    assert inside() and inside()
