"""The admin shows payments, gateway charges, orders, products and idempotency records."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.demo.conftest import DATABASES, post
from tests.demo.factories import CustomerFactory, ProductFactory

pytestmark = pytest.mark.django_db(transaction=True, databases=DATABASES)

CHANGELISTS = [
    "/admin/payments/payment/",
    "/admin/payments/customer/",
    "/admin/gateway/charge/",
    "/admin/orders/order/",
    "/admin/orders/product/",
    "/admin/idempotency/idempotencyrecord/",
]


@pytest.fixture
def admin_client(client):
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(admin)
    return client


def test_every_demo_model_is_listed_with_its_records(api, admin_client):
    CustomerFactory(customer_id="cust_123")
    ProductFactory(sku="laptop-13")
    payment = post(api, "/payments", {"customerId": "cust_123", "amount": 1, "currency": "EUR"})
    order = post(api, "/orders", {"userId": "u1", "sku": "laptop-13", "quantity": 1})

    pages = {url: admin_client.get(url) for url in CHANGELISTS}

    assert {url: page.status_code for url, page in pages.items()} == dict.fromkeys(CHANGELISTS, 200)
    assert payment.json()["paymentId"] in pages["/admin/payments/payment/"].text
    assert order.json()["orderId"] in pages["/admin/orders/order/"].text
    assert "ch_" in pages["/admin/gateway/charge/"].text


@pytest.mark.parametrize(
    "url",
    ["/admin/payments/payment/add/", "/admin/gateway/charge/add/", "/admin/orders/order/add/"],
)
def test_records_of_what_happened_cannot_be_added_by_hand(admin_client, url):
    assert admin_client.get(url).status_code == 403
