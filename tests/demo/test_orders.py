"""POST /orders, GET /orders, GET /orders/<orderId>, GET /products/<sku>."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend

from idempotency.models import IdempotencyRecord
from orders.models import Order, Product
from tests.demo.conftest import DATABASES, api_for, new_key, post, problem
from tests.demo.factories import ProductFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True, databases=DATABASES)

BODY = {"userId": "u1", "sku": "laptop-13", "quantity": 1}


def stock(sku="laptop-13"):
    return Product.objects.get(sku=sku).stock


@pytest.fixture(autouse=True)
def _laptop(laptop):
    return laptop


def test_an_order_reserves_stock_and_sends_one_email_after_the_commit(api, user):
    response = post(api, "/orders", BODY, key="order_abc123")

    assert response.status_code == 201
    body = response.json()
    assert re.fullmatch(r"ord_[0-9a-f]{24}", body["orderId"])
    assert {k: body[k] for k in ("status", "userId", "sku", "quantity")} == {
        "status": "confirmed",
        "userId": "u1",
        "sku": "laptop-13",
        "quantity": 1,
    }
    assert set(body) == {"orderId", "status", "userId", "sku", "quantity", "createdAt"}
    assert response["Location"] == f"/orders/{body['orderId']}"
    assert stock() == 2
    assert Order.objects.get().user == user
    [email] = mail.outbox
    assert email.to == ["u1@example.com"]
    assert body["orderId"] in email.subject
    assert "1 x Laptop 13-inch (laptop-13)" in email.body


def test_a_retried_order_is_replayed_and_sends_no_second_email(api):
    first = post(api, "/orders", BODY, key="order_abc123")
    retry = post(api, "/orders", BODY, key="order_abc123")

    assert retry.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert Order.objects.count() == 1
    assert stock() == 2
    assert len(mail.outbox) == 1


class BrokenMailServer(BaseEmailBackend):
    def send_messages(self, email_messages):
        raise ConnectionRefusedError("mail server down")


def test_a_mail_failure_after_the_commit_keeps_the_order_and_its_key(api, settings):
    # Were the failure to turn into a 500, the key would be freed and the retry order again.
    settings.EMAIL_BACKEND = f"{__name__}.BrokenMailServer"

    first = post(api, "/orders", BODY, key="order_mailfail")
    retry = post(api, "/orders", BODY, key="order_mailfail")

    assert first.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert (Order.objects.count(), stock()) == (1, 2)


def test_not_enough_stock_is_a_problem_of_its_own_and_changes_nothing(api):
    response = post(api, "/orders", {**BODY, "quantity": 4}, key="order_big")

    body = problem(response, 422, "out-of-stock")
    assert (body["sku"], body["requested"], body["available"]) == ("laptop-13", 4, 3)
    assert body["title"] == "Not enough stock"
    assert "Only 3 of laptop-13 left; 4 requested" in body["detail"]
    assert (stock(), Order.objects.count(), len(mail.outbox)) == (3, 0, 0)
    # Final for this request: stored, and replayed to its retry.
    retry = post(api, "/orders", {**BODY, "quantity": 4}, key="order_big")
    assert retry.status_code == 422
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == response.content


def test_the_last_units_can_be_ordered_and_then_none(api):
    assert post(api, "/orders", {**BODY, "quantity": 3}).status_code == 201
    assert stock() == 0

    body = problem(post(api, "/orders", BODY), 422, "out-of-stock")

    assert body["available"] == 0
    assert stock() == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sku": "no-such-thing"}, "sku"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": -1}, "quantity"),
        ({"quantity": 1.5}, "quantity"),
        ({"quantity": "1"}, "quantity"),
        ({"quantity": 101}, "quantity"),
        ({"userId": "u2"}, "userId"),
        ({"userId": ""}, "userId"),
        ({"note": "gift"}, "note"),
    ],
)
def test_bad_input_is_a_400_with_field_errors_and_changes_nothing(api, change, field):
    UserFactory(username="u2")

    response = post(api, "/orders", {**BODY, **change})

    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert (stock(), Order.objects.count(), len(mail.outbox)) == (3, 0, 0)
    assert IdempotencyRecord.objects.count() == 0


def test_an_order_is_for_the_caller_only(api):
    response = post(api, "/orders", {**BODY, "userId": "u2"})

    assert response.json() == {"userId": ["Must be your own user id, 'u1'."]}


def test_a_post_without_a_key_is_refused(api):
    problem(post(api, "/orders", BODY, key=None), 400, "key-missing")
    assert stock() == 3


@pytest.mark.parametrize("path", ["/orders", "/orders/"])
def test_both_paths_work(api, path):
    assert post(api, path, BODY).status_code == 201


def test_list_and_detail_show_the_callers_orders(api):
    mine = [post(api, "/orders", BODY).json() for _ in range(2)]
    other = api_for(UserFactory(username="u2"))
    theirs = post(other, "/orders", {**BODY, "userId": "u2"}).json()

    page = api.get("/orders").json()
    assert page["count"] == 2
    assert page["results"] == mine[::-1]
    assert api.get("/orders/").json() == page
    assert api.get(f"/orders/{mine[0]['orderId']}").json() == mine[0]
    assert api.get(f"/orders/{mine[0]['orderId']}/").json() == mine[0]
    assert api.get(f"/orders/{theirs['orderId']}").status_code == 404


def test_orders_need_a_token(client):
    assert client.get("/orders").status_code == 401


def test_product_detail_shows_the_current_stock(api):
    post(api, "/orders", {**BODY, "quantity": 2})

    for path in ("/products/laptop-13", "/products/laptop-13/"):
        assert api.get(path).json() == {"sku": "laptop-13", "name": "Laptop 13-inch", "stock": 1}
    assert api.get("/products/nothing").status_code == 404


def test_products_list(api):
    ProductFactory(sku="mouse-1", name="Wireless mouse", stock=100)

    assert [p["sku"] for p in api.get("/products").json()["results"]] == ["laptop-13", "mouse-1"]


@pytest.mark.usefixtures("demo_faults")
def test_crash_before_commit_rolls_everything_back_and_frees_the_key(api):
    key = new_key("order")
    crashed = post(api, "/orders", BODY, key=key, **{"X-Demo-Fault": "crash-before-commit"})

    problem(crashed, 500, "demo-crash")
    assert (stock(), Order.objects.count(), len(mail.outbox)) == (3, 0, 0)
    assert IdempotencyRecord.objects.count() == 0

    retry = post(api, "/orders", BODY, key=key)

    assert retry.status_code == 201
    assert (stock(), Order.objects.count(), len(mail.outbox)) == (2, 1, 1)


@pytest.mark.usefixtures("demo_faults")
def test_orders_know_only_their_own_fault(api):
    response = post(api, "/orders", BODY, **{"X-Demo-Fault": "crash-after-charge"})

    assert response.status_code == 400
    assert stock() == 3


def test_a_user_without_an_email_address_gets_an_order_and_no_email():
    user = UserFactory(username="quiet", email="")

    response = post(api_for(user), "/orders", {**BODY, "userId": "quiet"})

    assert response.status_code == 201
    assert mail.outbox == []
