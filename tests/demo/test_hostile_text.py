"""Text PostgreSQL cannot store or compare (NUL, lone surrogates) in the demo's lookups.

PostgreSQL refuses NUL in text, and a lone surrogate cannot be encoded to UTF-8 at all, so a
query that carries either fails. The demo's fields refuse such input with a 400, and the detail
routes answer 404: never a 500, on SQLite and on PostgreSQL alike.
"""

from __future__ import annotations

import json

import pytest

from idempotency.models import IdempotencyRecord
from orders.models import Order
from orders.serializers import OrderRequestSerializer
from payments.models import Payment
from payments.serializers import PaymentRequestSerializer
from tests.demo.conftest import DATABASES, new_key

pytestmark = pytest.mark.django_db(transaction=True, databases=DATABASES)

NUL = [pytest.param("cust\x00_123", id="inner-nul"), pytest.param("\x00", id="only-nul")]
SURROGATES = [
    pytest.param("cust_\ud800", id="lone-high-surrogate"),
    pytest.param("\udfff", id="lone-low-surrogate"),
]


def post_json(client, path, body):
    return client.generic(
        "POST",
        path,
        json.dumps(body),
        content_type="application/json",
        headers={"Idempotency-Key": new_key()},
    )


def assert_field_refused(response, field):
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    assert field in response.json()
    assert not IdempotencyRecord.objects.exists()  # refused input leaves the key free


@pytest.mark.parametrize("value", NUL)
def test_a_customer_id_with_nul_is_400(api, customer, value):
    body = {"customerId": value, "amount": 100, "currency": "USD"}
    assert_field_refused(post_json(api, "/payments", body), "customerId")
    assert not Payment.objects.exists()


@pytest.mark.parametrize("value", NUL)
def test_a_sku_with_nul_is_400(api, laptop, value):
    body = {"userId": "u1", "sku": value, "quantity": 1}
    assert_field_refused(post_json(api, "/orders", body), "sku")
    assert not Order.objects.exists()


@pytest.mark.parametrize("value", NUL)
def test_a_user_id_with_nul_is_400(api, laptop, value):
    body = {"userId": value, "sku": "laptop-13", "quantity": 1}
    assert_field_refused(post_json(api, "/orders", body), "userId")


# Over HTTP, a lone surrogate in a JSON body meets the request's fingerprint before the
# serializer (the library answers for it); the fields must refuse it all the same.
@pytest.mark.parametrize("value", NUL + SURROGATES)
def test_the_payment_request_refuses_a_customer_id_the_database_cannot_compare(customer, value):
    serializer = PaymentRequestSerializer(
        data={"customerId": value, "amount": 100, "currency": "USD"}
    )
    assert not serializer.is_valid()
    assert set(serializer.errors) == {"customerId"}


@pytest.mark.parametrize("value", NUL + SURROGATES)
def test_the_order_request_refuses_a_sku_the_database_cannot_compare(rf, user, laptop, value):
    request = rf.post("/orders")
    request.user = user
    serializer = OrderRequestSerializer(
        data={"userId": "u1", "sku": value, "quantity": 1}, context={"request": request}
    )
    assert not serializer.is_valid()
    assert set(serializer.errors) == {"sku"}


@pytest.mark.parametrize("value", ["laptop 13", "laptop-13/x", "l" * 65])
def test_a_sku_that_is_no_slug_is_refused_before_the_lookup(api, laptop, value):
    body = {"userId": "u1", "sku": value, "quantity": 1}
    assert_field_refused(post_json(api, "/orders", body), "sku")


def test_a_customer_id_longer_than_any_is_refused(api, customer):
    body = {"customerId": "c" * 65, "amount": 100, "currency": "USD"}
    assert_field_refused(post_json(api, "/payments", body), "customerId")


def test_valid_lookups_still_find_their_rows(api, customer, laptop):
    assert (
        post_json(api, "/orders", {"userId": "u1", "sku": "laptop-13", "quantity": 1}).status_code
        == 201
    )
    body = {"customerId": "cust_123", "amount": 100, "currency": "USD"}
    assert post_json(api, "/payments", body).status_code == 201


@pytest.mark.parametrize("path", ["/products", "/orders", "/payments"])
@pytest.mark.parametrize("segment", ["%00", "laptop%0013", "%00/"], ids=["nul", "inner", "slash"])
def test_a_detail_route_with_nul_is_404(api, laptop, path, segment):
    response = api.get(f"{path}/{segment}")
    assert response.status_code == 404, response.content
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize("path", ["/products", "/orders", "/payments"])
@pytest.mark.parametrize("segment", ["%ED%A0%80", "%F0%9F%98"], ids=["surrogate", "truncated"])
def test_a_detail_route_with_invalid_utf8_is_404(api, laptop, path, segment):
    # What a lone surrogate becomes in a URL: bytes that are not UTF-8.
    response = api.get(f"{path}/{segment}")
    assert response.status_code == 404, response.content
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize("path", ["/payments", "/orders"])
@pytest.mark.parametrize("value", SURROGATES)
def test_a_lone_surrogate_over_http_is_a_400_problem_and_changes_nothing(
    api, customer, path, value
):
    """The request fingerprint cannot encode it: the library refuses the body before anything."""
    body = {"customerId": value, "amount": 100, "currency": "USD", "sku": value, "quantity": 1}
    response = post_json(api, path, body)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["type"].endswith(":body-invalid")
    assert not IdempotencyRecord.objects.exists()
    assert not Payment.objects.exists() and not Order.objects.exists()
