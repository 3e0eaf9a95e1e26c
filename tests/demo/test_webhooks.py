"""POST /webhooks/gateway/: the gateway's charge.succeeded event, processed once however often it
is delivered (idempotency.operations.run_once keyed by the event id)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.core import mail
from django.test import Client

from idempotency.models import IdempotencyRecord
from payments import webhooks
from payments.models import Payment
from payments.webhooks import sign
from tests.demo.conftest import DATABASES, post, problem
from tests.test_concurrency import race

pytestmark = pytest.mark.django_db(transaction=True, databases=DATABASES)

URL = "/webhooks/gateway/"


@pytest.fixture
def payment(api, customer):
    response = post(api, "/payments", {"customerId": "cust_123", "amount": 2500, "currency": "EUR"})
    assert response.status_code == 201
    mail.outbox.clear()
    return Payment.objects.get()


def event_for(payment, event_id="evt_1", type_="charge.succeeded"):
    return {
        "id": event_id,
        "type": type_,
        "data": {"charge_id": payment.charge_id, "amount": payment.amount},
    }


def deliver(event, client=None, signature=None):
    body = json.dumps(event).encode()
    return (client or Client()).post(
        URL,
        body,
        content_type="application/json",
        headers={"X-Gateway-Signature": signature or sign(body)},
    )


def test_the_first_delivery_sends_one_receipt(payment, customer):
    response = deliver(event_for(payment))

    assert response.status_code == 200
    assert response.json() == {"paymentId": payment.payment_id, "receiptTo": customer.email}
    [receipt] = mail.outbox
    assert receipt.to == [customer.email]
    assert payment.payment_id in receipt.subject
    record = IdempotencyRecord.objects.get(scope="webhooks:gateway")
    assert (record.key, record.state, record.method) == ("evt_1", "completed", "EVENT")


def test_redeliveries_answer_the_same_and_send_nothing(payment):
    responses = [deliver(event_for(payment)) for _ in range(3)]

    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert len(mail.outbox) == 1


def test_another_event_for_the_same_charge_is_processed_too(payment):
    deliver(event_for(payment, "evt_1"))
    deliver(event_for(payment, "evt_2"))
    assert len(mail.outbox) == 2


def test_an_event_id_reused_for_another_event_is_refused(payment):
    deliver(event_for(payment))
    altered = event_for(payment)
    altered["data"]["amount"] = 1
    problem(deliver(altered), 422, "key-reused")
    assert len(mail.outbox) == 1


def test_an_unknown_charge_frees_the_event_for_redelivery(payment):
    early = event_for(payment)
    early["data"]["charge_id"] = "ch_not_yet"
    response = deliver(early)
    assert response.status_code == 404
    assert json.loads(response.content)["type"].endswith("webhook-charge-unknown")
    assert not IdempotencyRecord.objects.filter(scope="webhooks:gateway").exists()
    assert mail.outbox == []


def test_a_failing_handler_sends_nothing_and_the_redelivery_succeeds(payment, monkeypatch):
    original = webhooks.charge_succeeded

    def crash_after_scheduling(data):
        original(data)  # schedules the receipt for when the result commits
        raise RuntimeError("handler crashed")

    monkeypatch.setattr(webhooks, "charge_succeeded", crash_after_scheduling)
    client = Client(raise_request_exception=False)
    assert deliver(event_for(payment), client=client).status_code == 500
    assert mail.outbox == []  # rolled back: the on-commit receipt never went out

    monkeypatch.setattr(webhooks, "charge_succeeded", original)
    assert deliver(event_for(payment)).status_code == 200
    assert len(mail.outbox) == 1


def test_other_event_types_are_acknowledged_and_ignored(payment):
    response = deliver(event_for(payment, type_="charge.refunded"))
    assert response.json() == {"ignored": "charge.refunded"}
    assert mail.outbox == []


def test_a_bad_signature_is_refused(payment):
    response = deliver(event_for(payment), signature="sha256=00")
    assert response.status_code == 401
    assert mail.outbox == []
    assert not IdempotencyRecord.objects.filter(scope="webhooks:gateway").exists()


# WSGI servers hand headers over as latin-1 text: UTF-8 "é" arrives as "Ã©".
@pytest.mark.parametrize(
    "signature",
    ["sha256=\u00c3\u00a9", "sha256=" + "\u00fc" * 64, "\u2603"],
    ids=["utf8-as-latin1", "full-length", "snowman"],
)
def test_a_signature_with_non_ascii_characters_is_refused_not_a_crash(payment, signature):
    response = deliver(event_for(payment), signature=signature)

    problem(response, 401, "webhook-signature-invalid")
    assert mail.outbox == []
    assert not IdempotencyRecord.objects.filter(scope="webhooks:gateway").exists()


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"id": 1, "type": "x", "data": {}}'])
def test_a_malformed_event_is_400(payment, body):
    response = Client().post(
        URL, body, content_type="application/json", headers={"X-Gateway-Signature": sign(body)}
    )
    assert response.status_code == 400
    assert json.loads(response.content)["type"].endswith("webhook-event-malformed")


@pytest.mark.row_locks
def test_concurrent_deliveries_of_one_event_send_one_receipt(payment, monkeypatch):
    original = webhooks.charge_succeeded
    runs = []
    lock = threading.Lock()

    def slow_handler(data):
        with lock:
            runs.append(1)
        time.sleep(0.3)  # the first delivery is still processing while the others arrive
        return original(data)

    monkeypatch.setattr(webhooks, "charge_succeeded", slow_handler)

    def deliver_until_acknowledged(i):
        while True:
            response = deliver(event_for(payment))
            if response.status_code != 409:
                return response
            assert int(response["Retry-After"]) >= 1
            time.sleep(0.05)

    responses = race(10, deliver_until_acknowledged)

    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert len(runs) == 1
    assert len(mail.outbox) == 1
