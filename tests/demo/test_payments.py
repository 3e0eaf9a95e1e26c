"""POST /payments, GET /payments, GET /payments/<paymentId>."""

from __future__ import annotations

import re
import time
from datetime import datetime

import pytest
from rest_framework.pagination import PageNumberPagination

from gateway.models import Charge
from idempotency.models import IdempotencyRecord
from payments.gateway_keys import gateway_key
from payments.models import Payment
from tests.demo.conftest import DATABASES, api_for, new_key, post, problem
from tests.demo.factories import CustomerFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True, databases=DATABASES)

BODY = {"customerId": "cust_123", "amount": 100, "currency": "USD"}


@pytest.fixture(autouse=True)
def _customer(customer):
    return customer


def test_a_payment_charges_once_and_answers_201(api, user):
    response = post(api, "/payments", BODY, key="pay_8f7a9c2")

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"paymentId", "status", "customerId", "amount", "currency", "createdAt"}
    assert re.fullmatch(r"pmt_[0-9a-f]{24}", body["paymentId"])
    assert (body["status"], body["customerId"], body["amount"], body["currency"]) == (
        "charged",
        "cust_123",
        100,
        "USD",
    )
    datetime.fromisoformat(body["createdAt"])
    assert response["Location"] == f"/payments/{body['paymentId']}"
    payment = Payment.objects.get()
    charge = Charge.objects.get()
    assert (payment.payment_id, payment.created_by, payment.charge_id) == (
        body["paymentId"],
        user,
        charge.charge_id,
    )
    assert (charge.amount, charge.currency, charge.source) == (100, "USD", "cust_123")
    # The gateway's key is derived from the client's key and the caller's scope.
    assert charge.idempotency_key == gateway_key(f"auth.user:{user.pk}", "pay_8f7a9c2")


def test_a_retry_after_a_lost_response_is_replayed_not_charged_again(api):
    first = post(api, "/payments", BODY, key="pay_8f7a9c2")
    retry = post(api, "/payments", BODY, key="pay_8f7a9c2")

    assert retry.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert (Charge.objects.count(), Payment.objects.count()) == (1, 1)


def test_the_same_key_with_another_amount_is_refused(api):
    post(api, "/payments", BODY, key="pay_1")
    reused = post(api, "/payments", {**BODY, "amount": 500}, key="pay_1")

    problem(reused, 422, "key-reused")
    assert (Charge.objects.count(), Payment.objects.count()) == (1, 1)


def test_a_key_sent_again_after_its_record_expired_gets_the_first_payment(
    api, clock, clocked_store
):
    first = post(api, "/payments", BODY, key="pay_old")
    clock.advance(hours=25)  # past the record's expiry: the library treats the key as new

    again = post(api, "/payments", BODY, key="pay_old")

    # It ran again, and the gateway, which still knows the key, handed back its charge.
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again
    assert again.json() == first.json()
    assert (Charge.objects.count(), Payment.objects.count()) == (1, 1)


def test_two_users_with_the_same_key_make_two_payments():
    u1, u2 = UserFactory(username="u1"), UserFactory(username="u2")

    post(api_for(u1), "/payments", BODY, key="same")
    other = post(api_for(u2), "/payments", BODY, key="same")

    assert other.status_code == 201
    assert "Idempotent-Replayed" not in other
    # Their gateway keys differ too: the scope is part of the derivation.
    assert Charge.objects.values("idempotency_key").distinct().count() == 2
    assert Payment.objects.count() == 2


def test_a_post_without_a_key_is_refused(api):
    problem(post(api, "/payments", BODY, key=None), 400, "key-missing")
    assert Charge.objects.count() == 0


def test_an_anonymous_caller_is_refused_before_the_key_is_looked_at(client):
    response = client.post(
        "/payments", BODY, content_type="application/json", headers={"Idempotency-Key": "k"}
    )

    assert response.status_code == 401
    assert IdempotencyRecord.objects.count() == 0


def test_a_form_encoded_body_is_refused(api):
    response = api.post("/payments", BODY, headers={"Idempotency-Key": "k"})

    assert response.status_code == 415
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"customerId": "cust_nobody"}, "customerId"),
        ({"amount": 0}, "amount"),
        ({"amount": -100}, "amount"),
        ({"amount": 1.5}, "amount"),
        ({"amount": 100.0}, "amount"),
        ({"amount": "100"}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": 10**12}, "amount"),
        ({"amount": None}, "amount"),
        ({"currency": "usd"}, "currency"),
        ({"currency": "XYZ"}, "currency"),
        ({"currency": 840}, "currency"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_input_is_a_400_with_field_errors_and_changes_nothing(api, change, field):
    response = post(api, "/payments", {**BODY, **change})

    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert (Charge.objects.count(), Payment.objects.count()) == (0, 0)
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.parametrize("missing", ["customerId", "amount", "currency"])
def test_a_missing_field_is_a_400(api, missing):
    body = {name: value for name, value in BODY.items() if name != missing}

    response = post(api, "/payments", body)

    assert response.status_code == 400
    assert response.json()[missing] == ["This field is required."]


def test_error_messages_say_how_to_fix_the_request(api):
    response = post(api, "/payments", {**BODY, "customerId": "cust_x", "currency": "usd"})

    assert response.json() == {
        "customerId": ["Unknown customer 'cust_x'."],
        "currency": ["'usd' is not a supported currency; use one of USD, EUR, GBP, CHF, JPY."],
    }


def test_a_refused_request_leaves_its_key_free_for_the_corrected_one(api):
    assert post(api, "/payments", {**BODY, "amount": 0}, key="pay_fix").status_code == 400

    corrected = post(api, "/payments", BODY, key="pay_fix")

    assert corrected.status_code == 201
    assert Payment.objects.count() == 1


@pytest.mark.parametrize("path", ["/payments", "/payments/"])
def test_both_paths_work_and_are_one_route(api, path):
    assert post(api, path, BODY, key="pay_slash").status_code == 201
    other = "/payments/" if path == "/payments" else "/payments"

    replay = post(api, other, BODY, key="pay_slash")

    assert replay["Idempotent-Replayed"] == "true"


def test_list_shows_the_callers_payments_newest_first(api, user):
    ids = [post(api, "/payments", {**BODY, "amount": n}).json()["paymentId"] for n in (1, 2, 3)]
    post(api_for(UserFactory(username="u2")), "/payments", BODY)

    for path in ("/payments", "/payments/"):
        response = api.get(path)
        assert response.status_code == 200
        page = response.json()
        assert page["count"] == 3
        assert [p["paymentId"] for p in page["results"]] == ids[::-1]


def test_list_is_paginated(api, monkeypatch):
    # PAGE_SIZE is read when DRF's paginator class is defined, not per request.
    monkeypatch.setattr(PageNumberPagination, "page_size", 2)
    for amount in (1, 2, 3):
        post(api, "/payments", {**BODY, "amount": amount})

    first = api.get("/payments").json()
    second = api.get(first["next"]).json()

    assert [p["amount"] for p in first["results"]] == [3, 2]
    assert [p["amount"] for p in second["results"]] == [1]
    assert second["next"] is None


def test_detail_shows_one_of_the_callers_payments(api):
    created = post(api, "/payments", BODY).json()

    for path in (f"/payments/{created['paymentId']}", f"/payments/{created['paymentId']}/"):
        response = api.get(path)
        assert response.status_code == 200
        assert response.json() == created


def test_another_users_payment_is_not_found(api):
    theirs = post(api_for(UserFactory(username="u2")), "/payments", BODY).json()

    assert api.get(f"/payments/{theirs['paymentId']}").status_code == 404
    assert api.get("/payments/pmt_nope").status_code == 404


def test_reads_need_a_token(client):
    assert client.get("/payments").status_code == 401


def test_payments_of_another_customer_are_charged_to_them(api):
    CustomerFactory(customer_id="cust_456")

    response = post(api, "/payments", {**BODY, "customerId": "cust_456", "currency": "JPY"})

    assert response.status_code == 201
    assert Charge.objects.get().source == "cust_456"


# Faults on demand ---------------------------------------------------------------------------


@pytest.mark.usefixtures("demo_faults")
def test_crash_after_charge_then_retry_charges_once_and_pays_once(api):
    key = new_key("pay")
    crashed = post(api, "/payments", BODY, key=key, **{"X-Demo-Fault": "crash-after-charge"})

    body = problem(crashed, 500, "demo-crash")
    assert "Retry with the same idempotency key" in body["detail"]
    # The gateway's charge is outside our transaction: it survived the rollback.
    assert (Charge.objects.count(), Payment.objects.count()) == (1, 0)
    assert IdempotencyRecord.objects.count() == 0  # the key was released

    retry = post(api, "/payments", BODY, key=key)

    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry  # it ran, and the gateway handed back its charge
    assert (Charge.objects.count(), Payment.objects.count()) == (1, 1)
    assert Payment.objects.get().charge_id == Charge.objects.get().charge_id


@pytest.mark.usefixtures("demo_faults")
def test_crash_after_charge_then_retry_without_a_key_charges_twice(api, settings):
    # What the key prevents, shown on an endpoint where it is optional.
    settings.IDEMPOTENCY = {"REQUIRED": False}
    post(api, "/payments", BODY, key=None, **{"X-Demo-Fault": "crash-after-charge"})
    post(api, "/payments", BODY, key=None)

    assert (Charge.objects.count(), Payment.objects.count()) == (2, 1)


@pytest.mark.usefixtures("demo_faults")
def test_slow_makes_the_gateway_take_about_a_second(api):
    started = time.monotonic()
    response = post(api, "/payments", BODY, **{"X-Demo-Fault": "slow"})

    assert response.status_code == 201
    assert time.monotonic() - started >= 1.0


@pytest.mark.usefixtures("demo_faults")
def test_an_unknown_fault_is_a_400_naming_the_known_ones(api):
    response = post(api, "/payments", BODY, **{"X-Demo-Fault": "crash-before-commit"})

    assert response.status_code == 400
    assert response.json() == {
        "X-Demo-Fault": [
            "Unknown fault 'crash-before-commit'; this endpoint knows: crash-after-charge, slow."
        ]
    }
    assert Charge.objects.count() == 0


def test_faults_are_ignored_unless_the_demo_turns_them_on(api):
    response = post(api, "/payments", BODY, **{"X-Demo-Fault": "crash-after-charge"})

    assert response.status_code == 201
    assert Payment.objects.count() == 1
