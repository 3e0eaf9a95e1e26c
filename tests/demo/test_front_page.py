"""GET /: the demo's front door, and the demo-mode endpoints its live story uses.

Demo mode needs DEBUG *and* DEMO_MODE; pytest-django runs with DEBUG off, which is production.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.authtoken.models import Token

from gateway.models import Charge
from idempotency.models import IdempotencyRecord
from payments.models import Customer, Payment
from tests.demo.conftest import DATABASES, api_for, post
from tests.demo.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True, databases=DATABASES)

DEMO_ENDPOINTS = [
    ("post", "/demo/story/"),
    ("get", "/demo/story/cust_live_0000"),
    ("post", "/demo/without-idempotency/payments"),
]


@pytest.fixture
def demo_mode(settings):
    settings.DEBUG = True
    settings.DEMO_MODE = True


def signed_in_client():
    client = Client()
    assert client.post("/demo/sign-in/").status_code == 302
    return client


def test_the_front_page_links_the_admin_and_the_endpoints():
    response = Client().get("/")

    assert response.status_code == 200
    page = response.content.decode()
    for link in ('href="/admin/"', 'href="/payments"', 'href="/orders"'):
        assert link in page
    assert 'href="/products/laptop-13"' in page
    assert 'href="/gateway/charges"' in page


@pytest.mark.spectacular
def test_the_front_page_links_the_swagger_ui_and_the_schema():
    page = Client().get("/").content.decode()

    assert '<a href="/api/docs/">Swagger UI</a>' in page
    assert 'href="/api/schema/"' in page


def test_without_the_docs_the_front_page_says_how_to_get_them(settings):
    settings.ROOT_URLCONF = "tests.demo.urls_without_docs"

    page = Client().get("/").content.decode()

    assert "/api/docs/" not in page
    assert 'pip install -e ".[demo]"' in page


def test_outside_demo_mode_the_page_explains_and_offers_no_sign_in():
    page = Client().get("/").content.decode()

    assert "runs in demo mode only" in page
    assert "/demo/sign-in/" not in page
    assert '"ready": false' in page


@pytest.mark.parametrize("debug, demo_mode", [(False, False), (False, True), (True, False)])
def test_sign_in_does_not_exist_outside_demo_mode(settings, debug, demo_mode):
    settings.DEBUG, settings.DEMO_MODE = debug, demo_mode

    response = Client().post("/demo/sign-in/")

    assert response.status_code == 404
    assert not get_user_model().objects.exists()


@pytest.mark.parametrize("method, path", DEMO_ENDPOINTS)
def test_the_story_endpoints_do_not_exist_outside_demo_mode(settings, method, path):
    settings.DEMO_MODE = True  # DEBUG stays off: production settings never run the demo
    customer = Customer.objects.create(customer_id="cust_live_0000", name="Someone")
    client = api_for(UserFactory())
    body = {"customerId": customer.customer_id, "amount": 100, "currency": "USD"}

    response = getattr(client, method)(path, body if method == "post" else None, format="json")

    assert response.status_code == 404
    assert not Charge.objects.exists()


def test_in_demo_mode_sign_in_opens_a_session_for_the_demo_user(demo_mode):
    client = Client()

    response = client.post("/demo/sign-in/")

    assert response.status_code == 302
    assert response["Location"] == "/#story"
    user = get_user_model().objects.get(username="demo")
    assert not user.has_usable_password()
    assert not (user.is_staff or user.is_superuser)
    assert client.session["_auth_user_id"] == str(user.pk)
    page = client.get("/").content.decode()
    assert '"ready": true' in page
    assert "Calling the API as <strong>demo</strong>" in page


def test_sign_in_is_a_csrf_protected_post(demo_mode):
    assert Client().get("/demo/sign-in/").status_code == 405
    assert Client(enforce_csrf_checks=True).post("/demo/sign-in/").status_code == 403
    assert not get_user_model().objects.exists()


def test_the_page_never_holds_an_api_token(demo_mode):
    client = signed_in_client()
    token = Token.objects.create(user=get_user_model().objects.get(username="demo"))

    page = client.get("/").content.decode()

    assert token.key not in page
    assert re.findall(r"\b[0-9a-f]{40}\b", page) == []  # nor anyone's: DRF tokens look so


def test_the_story_over_the_api_one_charge_with_the_key_two_without(demo_mode):
    client = api_for(UserFactory(username="u1"))
    run = client.post("/demo/story/", format="json")
    assert run.status_code == 201
    customer_id = run.json()["customerId"]
    assert customer_id.startswith("cust_live_")
    body = {"customerId": customer_id, "amount": 100, "currency": "USD"}

    for _ in range(2):  # a payment, and its retry
        assert post(client, "/demo/without-idempotency/payments", body, key=None).status_code == 201
        assert post(client, "/payments", body, key="pay_story").status_code == 201

    state = client.get(f"/demo/story/{customer_id}", {"key": "pay_story"}).json()
    assert len(state["ledger"]["without"]) == 2
    assert len(state["ledger"]["with"]) == 1
    assert [charge["idempotencyKey"] for charge in state["ledger"]["without"]] == [None, None]
    record = state["record"]
    assert record["state"] == "completed"
    assert record["request"] == "POST /payments"
    assert record["responseStatus"] == 201
    [keyed] = Payment.objects.filter(charge_id=state["ledger"]["with"][0]["chargeId"])
    assert f'"paymentId": "{keyed.payment_id}"' in record["responseBody"]


def test_the_story_shows_only_the_callers_own_record(demo_mode):
    owner, other = api_for(UserFactory()), api_for(UserFactory())
    customer_id = owner.post("/demo/story/", format="json").json()["customerId"]
    body = {"customerId": customer_id, "amount": 100, "currency": "USD"}
    assert post(owner, "/payments", body, key="pay_mine").status_code == 201

    assert owner.get(f"/demo/story/{customer_id}", {"key": "pay_mine"}).json()["record"]
    assert other.get(f"/demo/story/{customer_id}", {"key": "pay_mine"}).json()["record"] is None
    assert IdempotencyRecord.objects.count() == 1


def test_the_story_reads_only_its_own_customers(demo_mode, customer):
    client = api_for(UserFactory())

    assert client.get(f"/demo/story/{customer.customer_id}").status_code == 404


def test_the_story_endpoints_need_a_signed_in_caller(demo_mode):
    for method, path in DEMO_ENDPOINTS:
        assert getattr(Client(), method)(path).status_code in (401, 403)
