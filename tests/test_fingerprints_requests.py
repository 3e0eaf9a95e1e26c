"""Fingerprints through real requests, with the DRF mixin and with ``@idempotent``.

Routes whose converters hand the view non-JSON values, bodies that once collided, bodies the
fingerprint cannot encode and numbers too large to convert: each answers as the contract says.
"""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client

from idempotency.models import IdempotencyRecord
from tests.testapp.models import Widget
from tests.testapp.views import Operation

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "fp-1"
plain = pytest.mark.urls("tests.plain_urls")

# Two values per converter: a uuid, a date (a custom converter returning datetime.date) and a
# custom converter returning an object with neither __eq__ nor __repr__.
CONVERTERS = {
    "uuid": ["3f2c8a1e-0d4b-4c52-9a51-6f0e2b7c9d10", "8b1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"],
    "date": ["2026-11-30", "2026-12-01"],
    "custom": ["acct_7x", "acct_8y"],
}
DRF_ROUTES = {
    "uuid": "/test/uuid-widgets/{}/",
    "date": "/test/dated-widgets/{}/",
    "custom": "/test/account-widgets/{}/",
}
PLAIN_ROUTES = {
    "uuid": "/plain/uuid/{}/",
    "date": "/plain/dated/{}/",
    "custom": "/plain/account/{}/",
}


def send(client, url, body, content_type="application/json", key=KEY):
    if not isinstance(body, str | bytes):
        body = json.dumps(body)
    return client.post(url, body, content_type=content_type, headers={"Idempotency-Key": key})


def assert_problem(response, status, type_suffix):
    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    problem = json.loads(response.content)
    assert problem["type"] == f"urn:django-idempotency:problem:{type_suffix}"
    assert problem["status"] == status
    return problem


@pytest.fixture
def client():
    return Client()


# 1. Routes with path converters -------------------------------------------------------------


def assert_runs_once_per_route_argument(client, route, kind):
    first_url, other_url = (route.format(value) for value in CONVERTERS[kind])
    first = send(client, first_url, {"name": "a"})
    again = send(client, first_url, {"name": "a"})
    other = send(client, other_url, {"name": "a"})

    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert_problem(other, 422, "key-reused")
    assert Operation.calls == 1


@pytest.mark.parametrize("kind", list(CONVERTERS))
def test_mixin_route_with_a_converter_runs_once_and_refuses_another_argument(client, kind):
    assert_runs_once_per_route_argument(client, DRF_ROUTES[kind], kind)


@plain
@pytest.mark.parametrize("kind", list(CONVERTERS))
def test_decorated_route_with_a_converter_runs_once_and_refuses_another_argument(client, kind):
    assert_runs_once_per_route_argument(client, PLAIN_ROUTES[kind], kind)


# 2. Bodies that used to collide are different requests ----------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # A number against user data spelled like the old encoding's number tag.
        ({"name": "a", "note": 0.01}, {"name": "a", "note": {"number": "0.01"}}),
        ({"name": "a", "note": 1}, {"name": "a", "note": 1.0}),
        ({"name": "a", "note": ["a"]}, {"name": "a", "note": [["a"]]}),
    ],
)
def test_mixin_refuses_a_retry_whose_body_once_fingerprinted_alike(client, first, second):
    assert send(client, "/test/widgets", first).status_code == 201
    assert_problem(send(client, "/test/widgets", second), 422, "key-reused")
    assert Operation.calls == 1


def test_mixin_tells_a_form_body_from_the_json_list_it_parses_like(client):
    form = send(client, "/test/widgets", "name=a", "application/x-www-form-urlencoded")
    assert form.status_code == 201
    assert_problem(send(client, "/test/widgets", {"name": ["a"]}), 422, "key-reused")
    assert Operation.calls == 1


@plain
@pytest.mark.parametrize(
    ("first", "second"),
    [
        ('{"name": "a", "amount": 0.1}', '{"name": "a", "amount": 0.10000000000000001}'),
        ('{"name": "a", "amount": 1}', '{"name": "a", "amount": 1.0}'),
        ('{"name": "a", "amount": 0.01}', '{"name": "a", "amount": {"number": "0.01"}}'),
    ],
)
def test_decorated_view_refuses_another_spelling_of_a_number(client, first, second):
    assert send(client, "/plain/widgets/", first).status_code == 201
    assert_problem(send(client, "/plain/widgets/", second), 422, "key-reused")
    assert Operation.calls == 1


@plain
def test_decorated_view_replays_the_same_numbers_in_another_key_order(client):
    first = send(client, "/plain/widgets/", '{"name": "a", "amount": 0.10, "n": 1e400}')
    again = send(client, "/plain/widgets/", '{ "n" : 1e400 , "amount":0.10,"name":"a"}')
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert Operation.calls == 1


# 3. Bodies the fingerprint cannot encode -------------------------------------------------------

LONE_SURROGATE = '{"name": "a", "\\udb9d": 1}'


@pytest.mark.parametrize("url", ["/test/widgets", pytest.param("/plain/widgets/", marks=plain)])
def test_a_lone_surrogate_is_a_400_problem_and_nothing_is_stored(client, url):
    problem = assert_problem(send(client, url, LONE_SURROGATE), 400, "body-invalid")

    assert problem["code"] == "request_body_invalid"
    assert not IdempotencyRecord.objects.exists()
    assert Operation.calls == 0
    # The key is still free for the corrected request.
    assert send(client, url, {"name": "a"}).status_code == 201


def test_mixin_answers_a_body_nested_past_the_recursion_limit_with_a_400(client):
    deep = '{"name": "a", "x": ' + "[" * 5000 + "]" * 5000 + "}"
    assert send(client, "/test/widgets", deep).status_code == 400
    assert not IdempotencyRecord.objects.exists()
    assert Operation.calls == 0


# 5. Decimals with a huge exponent --------------------------------------------------------------


@pytest.mark.parametrize("amount", ["1e5000", "1e300000", "-1e-300000"])
def test_a_huge_decimal_amount_is_answered_by_the_views_validation_quickly(client, amount):
    started = time.perf_counter()
    response = send(client, "/test/amounts/", '{"amount": ' + amount + "}")
    elapsed = time.perf_counter() - started

    assert response.status_code == 400
    assert "amount" in response.json()
    assert elapsed < 1.0  # the quadratic conversion took seconds
    assert not IdempotencyRecord.objects.exists()
    assert send(client, "/test/amounts/", '{"amount": 12.50}').status_code == 201
    assert Widget.objects.get().name == "12.50"
