"""The simulated card gateway: its own ledger, its own keys, GET /gateway/charges."""

from __future__ import annotations

import pytest
from django.db import connections, router, transaction

from gateway import client as gateway
from gateway.client import GatewayKeyReused
from gateway.models import Charge
from payments.gateway_keys import gateway_key
from payments.models import Payment
from tests.demo.conftest import DATABASES, post

pytestmark = pytest.mark.django_db(transaction=True, databases=DATABASES)

CHARGE = {"amount": 100, "currency": "USD", "source": "cust_123"}


def test_the_ledger_is_on_the_gateways_own_alias():
    assert router.db_for_write(Charge) == router.db_for_read(Charge) == "gateway"
    assert router.db_for_write(Payment) == "default"
    assert connections["gateway"] is not connections["default"]


def test_a_charge_survives_a_rollback_of_the_callers_transaction():
    with transaction.atomic():
        made = gateway.charge(**CHARGE, idempotency_key="k1")
        transaction.set_rollback(True)

    assert list(Charge.objects.values_list("charge_id", flat=True)) == [made.charge_id]


def test_the_same_key_returns_the_same_charge():
    first = gateway.charge(**CHARGE, idempotency_key="k1")
    again = gateway.charge(**CHARGE, idempotency_key="k1")

    assert again.charge_id == first.charge_id
    assert Charge.objects.count() == 1


def test_without_a_key_every_call_is_a_new_charge():
    gateway.charge(**CHARGE)
    gateway.charge(**CHARGE)

    assert Charge.objects.count() == 2
    assert set(Charge.objects.values_list("idempotency_key", flat=True)) == {None}


@pytest.mark.parametrize("change", [{"amount": 101}, {"currency": "EUR"}, {"source": "cust_9"}])
def test_the_same_key_for_another_charge_is_refused(change):
    gateway.charge(**CHARGE, idempotency_key="k1")

    with pytest.raises(GatewayKeyReused):
        gateway.charge(**{**CHARGE, **change}, idempotency_key="k1")
    assert Charge.objects.count() == 1


def test_gateway_keys_are_per_scope_and_key_and_unambiguous():
    key = gateway_key("auth.user:1", "pay_1")

    assert key == gateway_key("auth.user:1", "pay_1")
    assert len(key) == 64
    assert key != gateway_key("auth.user:2", "pay_1")
    assert key != gateway_key("auth.user:1", "pay_2")
    # The parts cannot slide into each other.
    assert gateway_key("a:b", "c") != gateway_key("a", "b:c")
    # The gateway never sees the raw key.
    assert "pay_1" not in key


def test_charges_endpoint_lists_the_ledger_newest_first(api):
    older = gateway.charge(**CHARGE)
    newer = gateway.charge(**{**CHARGE, "amount": 7}, idempotency_key="k9")

    for path in ("/gateway/charges", "/gateway/charges/"):
        response = api.get(path)
        assert response.status_code == 200
        page = response.json()
        assert page["count"] == 2
        assert [c["chargeId"] for c in page["results"]] == [newer.charge_id, older.charge_id]
    assert page["results"][0] == {
        "chargeId": newer.charge_id,
        "status": "succeeded",
        "amount": 7,
        "currency": "USD",
        "source": "cust_123",
        "idempotencyKey": "k9",
        "createdAt": page["results"][0]["createdAt"],
    }


def test_charges_endpoint_is_read_only(api):
    response = post(api, "/gateway/charges", CHARGE)

    assert response.status_code == 405
    assert Charge.objects.count() == 0


def test_charges_endpoint_needs_a_token(client):
    assert client.get("/gateway/charges").status_code == 401
