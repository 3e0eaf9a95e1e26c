"""The per-request cuts of the new-key path give what the code they replace gave.

Each cut reads the same values a cheaper way: the HttpRequest's own attributes instead of DRF's
attribute proxy, a response's header store instead of ``items()``, the C JSON encoder built once
instead of per call, the connection the transaction already holds instead of a new lookup.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.http import HttpResponse
from django.test import RequestFactory
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from idempotency import fingerprints
from idempotency.attempts import Attempt
from idempotency.keys import header_value
from idempotency.responses import snapshot
from idempotency.signals import KeyEvents
from idempotency.store import RecordStore, Reserved

DOCUMENTS: list[Any] = [
    "",
    "plain",
    'quote " backslash \\ control \x01 newline \n',
    "non-ASCII: é, 漢字, 😀",
    None,
    True,
    0,
    -(2**53) + 1,
    1.5,
    math.inf,
    -math.inf,
    math.nan,
    [],
    {},
    ["drf", "POST", ["route", "notes/", ["l"], {}], ["multi", {}], "application/json", {}],
    {"b": [1, {"z": None, "a": [True, False]}], "a": "x", "é": {"": ["l", "s"]}},
    [[[[["deep"]]]]],
]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_encoder_built_once_encodes_as_json_encoder(document: Any) -> None:
    expected = json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), sort_keys=True, check_circular=False
    ).encode(document)
    assert fingerprints._dumps(document) == expected


def test_the_encoder_built_once_refuses_what_json_encoder_refuses() -> None:
    with pytest.raises(TypeError, match="is not JSON serializable"):
        fingerprints._dumps([Decimal("1")])
    with pytest.raises(TypeError, match="keys must be str"):
        fingerprints._dumps({("a",): 1})


def test_snapshot_keeps_the_headers_items_gives_in_their_order() -> None:
    response = HttpResponse(b"{}", content_type="application/json", status=201)
    response["location"] = "/notes/1"
    response["X-Other"] = "no"
    response["ETag"] = '"v1"'
    response["Set-Cookie"] = "a=b"
    response["Link"] = "</a>; rel=next"
    del response["X-Other"]
    response["Location"] = "/notes/2"  # replaced: keeps its place, takes the new spelling
    replayed = frozenset({"content-type", "location", "etag", "link"})
    expected = [(name, value) for name, value in response.items() if name.lower() in replayed]
    stored = snapshot(response, replayed)
    assert stored.headers == expected
    assert [name for name, _ in stored.headers] == ["Content-Type", "Location", "ETag", "Link"]


def test_snapshot_of_a_rendered_drf_response() -> None:
    response = Response({"id": 1}, status=201, headers={"Location": "/notes/1"})
    response.accepted_renderer = JSONRenderer()
    response.accepted_media_type = "application/json"
    response.renderer_context = {}  # type: ignore[attr-defined]
    response.render()
    replayed = frozenset({"content-type", "location"})
    expected = [(name, value) for name, value in response.items() if name.lower() in replayed]
    assert snapshot(response, replayed).headers == expected


def test_header_value_reads_a_drf_request_as_its_proxy_did() -> None:
    django_request = RequestFactory().post("/x", headers={"Idempotency-Key": "k-1"})
    request = Request(django_request)
    assert header_value(request, "Idempotency-Key") == request.headers.get("Idempotency-Key")
    assert header_value(request, "Idempotency-Key") == "k-1"
    assert header_value(request, "Other") is None
    assert header_value(django_request, "idempotency-key") == "k-1"


def test_header_value_of_a_request_subclass_goes_through_its_attributes() -> None:
    class OwnMeta(Request):
        META = {"HTTP_IDEMPOTENCY_KEY": "own"}  # noqa: RUF012 (read only)

    request = OwnMeta(RequestFactory().post("/x", headers={"Idempotency-Key": "wrapped"}))
    assert header_value(request, "Idempotency-Key") == "own"


@pytest.mark.django_db(transaction=True)
def test_attempt_complete_looks_the_connection_up_when_none_is_given() -> None:
    store = RecordStore()
    decision = store.reserve(
        scope="s",
        key="cuts4",
        fingerprint="f" * 64,
        method="POST",
        path="/x",
        lease=timedelta(seconds=60),
        expiry=timedelta(hours=1),
    )
    assert isinstance(decision, Reserved)
    attempt = Attempt(store, decision, KeyEvents(None, "s", "cuts4"))
    with transaction.atomic():
        attempt.complete(snapshot(HttpResponse(b"ok"), frozenset()))
    assert store.poll(scope="s", key="cuts4", fingerprint="f" * 64) is not None
    assert connection.in_atomic_block is False
