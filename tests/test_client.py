"""idempotency.contrib.client: one key per logical call, retried only when a retry is safe."""

from __future__ import annotations

import json

import httpx
import pytest

from idempotency.contrib.client import IdempotentClient, parse_retry_after


def scripted(*answers):
    """A transport that answers ``answers`` in order (an exception is raised instead)."""
    seen = []

    def handle(request):
        seen.append(request)
        answer = answers[len(seen) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handle), seen


def client_for(transport, **options):
    delays = []
    client = IdempotentClient(
        httpx.Client(transport=transport, base_url="http://api"),
        sleep=delays.append,
        **options,
    )
    return client, delays


def test_one_key_per_call_reused_by_every_retry_of_it():
    transport, seen = scripted(
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("timed out"),
        httpx.Response(201, json={"id": 1}),
    )
    client, delays = client_for(transport)

    response = client.post("/payments", json={"amount": 100})

    keys = {request.headers["Idempotency-Key"] for request in seen}
    assert len(seen) == 3 and len(keys) == 1
    assert response.extensions["idempotency_key"] == keys.pop()
    assert response.extensions["idempotency_attempts"] == 3
    assert len(delays) == 2
    assert json.loads(seen[2].content) == {"amount": 100}


def test_each_call_gets_a_key_of_its_own():
    transport, seen = scripted(httpx.Response(201), httpx.Response(201))
    client, _ = client_for(transport)
    client.post("/payments")
    client.post("/payments")
    assert seen[0].headers["Idempotency-Key"] != seen[1].headers["Idempotency-Key"]


def test_a_409_in_progress_is_retried_after_its_retry_after():
    transport, seen = scripted(
        httpx.Response(409, headers={"Retry-After": "2"}),
        httpx.Response(201, headers={"Idempotent-Replayed": "true"}),
    )
    client, delays = client_for(transport)
    response = client.post("/payments")
    assert response.status_code == 201
    assert delays == [2.0]


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_transient_statuses_are_retried(status):
    transport, seen = scripted(httpx.Response(status), httpx.Response(200))
    client, delays = client_for(transport, backoff=0.5)
    assert client.post("/x").status_code == 200
    assert len(seen) == 2
    assert 0 <= delays[0] <= 0.5


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 500])
def test_final_answers_are_never_retried(status):
    """A 422 (key reused) or any other 4xx is final; a 409 without Retry-After is the app's."""
    transport, seen = scripted(httpx.Response(status), httpx.Response(200))
    client, delays = client_for(transport)
    assert client.post("/x").status_code == status
    assert len(seen) == 1 and delays == []


def test_safe_methods_are_retried_without_a_key():
    transport, seen = scripted(httpx.ConnectError("refused"), httpx.Response(200))
    client, _ = client_for(transport)
    response = client.get("/payments")
    assert response.status_code == 200
    assert all("Idempotency-Key" not in request.headers for request in seen)
    assert response.extensions["idempotency_key"] is None


def test_a_key_of_the_callers_own_is_kept():
    transport, seen = scripted(httpx.Response(503), httpx.Response(201))
    client, _ = client_for(transport)
    client.post("/x", idempotency_key="order-42")
    assert [request.headers["Idempotency-Key"] for request in seen] == ["order-42"] * 2
    client_headers = scripted(httpx.Response(201))
    other, _ = client_for(client_headers[0])
    other.post("/x", headers={"Idempotency-Key": "mine"})
    assert client_headers[1][0].headers["Idempotency-Key"] == "mine"


def test_attempts_are_bounded_and_the_last_error_is_raised():
    transport, seen = scripted(*[httpx.ConnectError("refused")] * 3)
    attempts = []
    client, delays = client_for(transport, max_attempts=3, on_attempt=attempts.append)
    with pytest.raises(httpx.ConnectError):
        client.post("/x")
    assert len(seen) == 3 and len(delays) == 2
    assert [info.attempt for info in attempts] == [1, 2, 3]
    assert attempts[-1].retry_in is None
    assert len({info.key for info in attempts}) == 1


def test_backoff_is_capped_exponential_with_jitter():
    transport, _ = scripted(*[httpx.Response(503)] * 6)
    client, delays = client_for(transport, max_attempts=6, backoff=1.0, max_backoff=4.0)
    assert client.post("/x").status_code == 503
    caps = [1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(0 <= delay <= cap for delay, cap in zip(delays, caps, strict=True))


def test_retry_after_is_capped():
    transport, _ = scripted(
        httpx.Response(429, headers={"Retry-After": "3600"}), httpx.Response(200)
    )
    client, delays = client_for(transport, max_retry_after=30)
    client.post("/x")
    assert delays == [30]


def test_retry_after_takes_seconds_or_an_http_date():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
