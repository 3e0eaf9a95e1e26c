"""replay_response: the stored outcome rebuilt header for header, marked as a replay."""

from __future__ import annotations

from idempotency.responses import REPLAYED_HEADER, replay_response
from idempotency.store import StoredResponse


def test_replay_has_the_stored_headers_in_order_then_the_mark() -> None:
    stored = StoredResponse(
        201, [("Content-Type", "application/json"), ("Location", "/payments/1")], b'{"id":1}'
    )
    response = replay_response(stored)
    assert response.status_code == 201
    assert response.content == b'{"id":1}'
    assert list(response.items()) == [
        ("Content-Type", "application/json"),
        ("Location", "/payments/1"),
        (REPLAYED_HEADER, "true"),
    ]


def test_replay_of_an_outcome_without_content_type_has_none() -> None:
    # DRF drops Content-Type from an empty body (a 204): the replay must not invent one.
    response = replay_response(StoredResponse(204, [], b""))
    assert "Content-Type" not in response
    assert list(response.items()) == [(REPLAYED_HEADER, "true")]


def test_a_stored_name_in_any_case_counts_as_the_content_type() -> None:
    response = replay_response(StoredResponse(200, [("content-type", "text/plain")], b"ok"))
    assert response["Content-Type"] == "text/plain"
    assert len([name for name, _ in response.items() if name.lower() == "content-type"]) == 1
