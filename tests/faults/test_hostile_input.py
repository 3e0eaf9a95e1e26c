"""Hostile and broken input to ``POST /payments``: each case its documented 4xx, and nothing
happens: no idempotency record, no gateway charge, no payment.
"""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from gateway.models import Charge
from idempotency.models import IdempotencyRecord
from payments.models import Payment
from tests.demo.conftest import DATABASES, api_for
from tests.demo.factories import CustomerFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True, databases=DATABASES)

BODY = {"customerId": "cust_123", "amount": 100, "currency": "USD"}
PROBLEM = "urn:django-idempotency:problem:"


def with_key(raw):
    """Send ``raw`` as the Idempotency-Key header exactly (the WSGI environ holds any str)."""
    return {"HTTP_IDEMPOTENCY_KEY": raw}


def json_body(body, key="k1"):
    return {"data": json.dumps(body), "content_type": "application/json", **with_key(key)}


def changed(**fields):
    return json_body({**BODY, **fields})


def without(name):
    return json_body({field: value for field, value in BODY.items() if field != name})


def problem(type_suffix):
    def check(response):
        assert response["Content-Type"] == "application/problem+json"
        assert json.loads(response.content)["type"] == PROBLEM + type_suffix

    return check


def field_error(name, message=None):
    def check(response):
        errors = response.json()
        assert list(errors) == [name], errors
        if message is not None:
            assert errors[name] == [message]

    return check


def detail(fragment):
    def check(response):
        assert fragment in response.json()["detail"]

    return check


OVER_LIMIT = json.dumps({**BODY, "note": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})

CASES = [
    # The key.
    pytest.param({"data": json.dumps(BODY), "content_type": "application/json"},
                 400, problem("key-missing"), id="key-missing"),
    pytest.param(json_body(BODY, key=""), 400, problem("key-invalid"), id="key-empty"),
    pytest.param(json_body(BODY, key="k" * 256), 400, problem("key-invalid"), id="key-too-long"),
    pytest.param(json_body(BODY, key="clé-€"), 400, problem("key-invalid"), id="key-non-ascii"),
    pytest.param(json_body(BODY, key="a\x00b"), 400, problem("key-invalid"), id="key-nul"),
    pytest.param(json_body(BODY, key="a\tb"), 400, problem("key-invalid"), id="key-tab"),
    pytest.param(json_body(BODY, key="a\x1bb"), 400, problem("key-invalid"), id="key-escape"),
    pytest.param(json_body(BODY, key="a,b"), 400, problem("key-invalid"), id="key-comma"),
    pytest.param(json_body(BODY, key="k1, k2"), 400, problem("key-invalid"), id="key-repeated"),
    pytest.param(json_body(BODY, key='"k1'), 400, problem("key-invalid"), id="key-bad-quoting"),
    # The body as a whole.
    pytest.param({"data": '{"customerId": "cust_123", "amount": 1', "content_type":
                  "application/json", **with_key("k1")}, 400, detail("JSON parse error"),
                 id="json-truncated"),
    pytest.param({"data": '{"amount": NaN}', "content_type": "application/json",
                  **with_key("k1")}, 400, detail("JSON parse error"), id="json-nan"),
    pytest.param({"data": b"\xff\xfe{}", "content_type": "application/json", **with_key("k1")},
                 400, detail("JSON parse error"), id="json-not-utf8"),
    pytest.param(json_body([BODY]), 400, field_error("non_field_errors"), id="json-array"),
    pytest.param(json_body("pay me"), 400, field_error("non_field_errors"), id="json-string"),
    pytest.param({"data": "customerId=cust_123&amount=100&currency=USD", "content_type":
                  "application/x-www-form-urlencoded", **with_key("k1")}, 415,
                 detail("Unsupported media type"), id="form-encoded"),
    pytest.param({"data": json.dumps(BODY), "content_type": "text/plain", **with_key("k1")},
                 415, detail("Unsupported media type"), id="text-plain"),
    pytest.param({"data": OVER_LIMIT, "content_type": "application/json", **with_key("k1")},
                 413, problem("body-too-large"), id="body-over-limit"),
    # The fields.
    pytest.param(changed(amount=0), 400, field_error("amount"), id="amount-zero"),
    pytest.param(changed(amount=-100), 400, field_error("amount"), id="amount-negative"),
    pytest.param(changed(amount=1.5), 400, field_error("amount"), id="amount-fractional"),
    pytest.param(changed(amount=100.0), 400, field_error("amount"), id="amount-float"),
    pytest.param(changed(amount=10**12), 400, field_error("amount"), id="amount-huge"),
    pytest.param(changed(amount=10**400), 400, field_error("amount"), id="amount-gigantic"),
    pytest.param(changed(amount="100"), 400, field_error("amount"), id="amount-string"),
    pytest.param(changed(amount=True), 400, field_error("amount"), id="amount-boolean"),
    pytest.param(changed(amount=None), 400, field_error("amount"), id="amount-null"),
    pytest.param(changed(currency="XYZ"), 400, field_error("currency"), id="currency-unknown"),
    pytest.param(changed(currency="usd"), 400, field_error("currency"), id="currency-lowercase"),
    pytest.param(changed(customerId="cust_nobody"), 400, field_error("customerId"),
                 id="customer-unknown"),
    pytest.param(changed(customerId="cust_123' OR '1'='1"), 400, field_error("customerId"),
                 id="customer-injection"),
    pytest.param(changed(status="refunded"), 400, field_error("status", "Unknown field."),
                 id="field-unknown"),
    pytest.param(changed(paymentId="pmt_mine"), 400, field_error("paymentId", "Unknown field."),
                 id="field-read-only"),
    pytest.param(without("amount"), 400, field_error("amount", "This field is required."),
                 id="field-missing-amount"),
    pytest.param(without("currency"), 400, field_error("currency", "This field is required."),
                 id="field-missing-currency"),
    pytest.param(without("customerId"), 400,
                 field_error("customerId", "This field is required."), id="field-missing-customer"),
    pytest.param(json_body({}), 400, None, id="body-empty-object"),
]  # fmt: skip


@pytest.mark.parametrize(("request_kwargs", "status", "check"), CASES)
def test_hostile_input_is_refused_and_changes_nothing(request_kwargs, status, check):
    CustomerFactory(customer_id="cust_123")
    api = api_for(UserFactory(username="u1"))
    api.raise_request_exception = False  # a crash must show as a 500 here, not as an error

    response = api.generic("POST", "/payments", **request_kwargs)

    assert response.status_code == status, response.content[:300]
    if check is not None:
        check(response)
    assert not IdempotencyRecord.objects.exists()
    assert not Charge.objects.exists()
    assert not Payment.objects.exists()


def test_the_corrected_request_then_runs_with_the_same_key():
    """Refusals leave the key free: the fixed request is a new operation, charged once."""
    CustomerFactory(customer_id="cust_123")
    api = api_for(UserFactory(username="u1"))
    for kwargs, *_ in (case.values for case in CASES):
        if kwargs.get("HTTP_IDEMPOTENCY_KEY") == "k1":
            assert api.generic("POST", "/payments", **kwargs).status_code in (400, 413, 415)

    response = api.generic("POST", "/payments", **json_body(BODY))

    assert response.status_code == 201
    assert (Charge.objects.count(), Payment.objects.count()) == (1, 1)
