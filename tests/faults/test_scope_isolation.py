"""Scope isolation in the demo: one caller's key never reaches another caller's outcome."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from gateway.models import Charge
from idempotency.models import IdempotencyRecord
from payments.models import Payment
from tests.demo.conftest import DATABASES, api_for, post
from tests.demo.factories import CustomerFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True, databases=DATABASES)

BODY = {"customerId": "cust_123", "amount": 100, "currency": "USD"}
KEY = "pay_shared_8f7a"


@pytest.fixture
def alice():
    CustomerFactory(customer_id="cust_123")
    CustomerFactory(customer_id="cust_456")
    return UserFactory(username="alice")


@pytest.fixture
def bob():
    return UserFactory(username="bob")


def test_another_user_sending_the_same_key_gets_an_operation_of_its_own(alice, bob):
    first = post(api_for(alice), "/payments", BODY, key=KEY)
    theirs = post(api_for(bob), "/payments", BODY, key=KEY)

    assert (first.status_code, theirs.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in theirs
    assert theirs.json()["paymentId"] != first.json()["paymentId"]
    # Two payments, each charged once and made by its own caller; two gateway keys.
    assert sorted(Payment.objects.values_list("created_by__username", flat=True)) == [
        "alice",
        "bob",
    ]
    assert Charge.objects.values("idempotency_key").distinct().count() == 2
    # Each one's retries get their own outcome back.
    assert post(api_for(alice), "/payments", BODY, key=KEY).content == first.content
    assert post(api_for(bob), "/payments", BODY, key=KEY).content == theirs.content


def test_another_user_sending_the_key_with_another_body_learns_nothing_of_the_first(alice, bob):
    """Not a 422 naming the first request: in Bob's scope the key is simply new."""
    post(api_for(alice), "/payments", BODY, key=KEY)
    other = {"customerId": "cust_456", "amount": 999, "currency": "EUR"}

    theirs = post(api_for(bob), "/payments", other, key=KEY)

    assert theirs.status_code == 201
    assert (theirs.json()["customerId"], theirs.json()["amount"]) == ("cust_456", 999)
    assert Payment.objects.count() == 2


def test_a_concurrent_holder_in_another_scope_does_not_block(alice, bob, clocked_store):
    """Alice's key in progress is no 409 for Bob: locks are per scope."""
    from datetime import timedelta

    clocked_store.reserve(
        scope=f"auth.user:{alice.pk}",
        key=KEY,
        fingerprint="in-flight",
        method="POST",
        path="/payments",
        lease=timedelta(seconds=60),
        expiry=timedelta(hours=1),
    )

    assert post(api_for(bob), "/payments", BODY, key=KEY).status_code == 201


@pytest.mark.parametrize(
    "credentials",
    [None, "Token not-a-real-token", "Token ", "Basic YWxpY2U6c2VjcmV0"],
    ids=["anonymous", "bad-token", "empty-token", "basic-auth"],
)
def test_an_unauthenticated_caller_never_reads_a_stored_response(alice, credentials):
    stored = post(api_for(alice), "/payments", BODY, key=KEY)
    client = APIClient()
    if credentials is not None:
        client.credentials(HTTP_AUTHORIZATION=credentials)

    response = post(client, "/payments", BODY, key=KEY)

    assert response.status_code == 401
    assert "Idempotent-Replayed" not in response
    assert stored.json()["paymentId"].encode() not in response.content
    assert IdempotencyRecord.objects.count() == 1  # nothing reserved for the stranger
    assert (Charge.objects.count(), Payment.objects.count()) == (1, 1)
