"""Real races on PostgreSQL: threads, each on its own connection, released at one moment."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from celery._state import task_join_will_block
from django.core import mail
from django.db import connections

from gateway import client as gateway
from gateway.models import Charge
from orders.models import Order
from payments.models import Payment
from tests.demo.conftest import DATABASES, api_for, post
from tests.demo.factories import CustomerFactory, ProductFactory, UserFactory

pytestmark = [
    pytest.mark.row_locks,
    pytest.mark.django_db(transaction=True, databases=DATABASES),
]

THREADS = 20


def race(task, count=THREADS):
    """Run ``task(i)`` in ``count`` threads that all start at once; return the results."""
    barrier = threading.Barrier(count)

    def run(i):
        try:
            barrier.wait(timeout=10)
            return task(i)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_orders_racing_for_the_last_units_never_oversell():
    product = ProductFactory(sku="laptop-13", stock=7)
    users = [UserFactory(username=f"racer{i}") for i in range(THREADS)]

    statuses = race(
        lambda i: (
            post(
                api_for(users[i]),
                "/orders",
                {"userId": users[i].username, "sku": "laptop-13", "quantity": 2},
                key=f"order_race_{i}",
            ).status_code
        )
    )

    # 7 units, 2 per order: three orders fit, one unit stays; everyone else is told so.
    assert sorted(statuses) == [201] * 3 + [422] * (THREADS - 3)
    product.refresh_from_db()
    assert product.stock == 1
    assert Order.objects.count() == 3
    assert len(mail.outbox) == 3
    # Concurrent eager confirmations never leave Celery's process-wide "no result.get()" flag
    # set (its eager delay() flips it without a lock): later tasks in the process still work.
    assert not task_join_will_block()


def test_one_payment_key_sent_at_once_charges_once():
    CustomerFactory(customer_id="cust_123")
    user = UserFactory(username="u1")
    body = {"customerId": "cust_123", "amount": 100, "currency": "USD"}

    responses = race(lambda i: post(api_for(user), "/payments", body, key="pay_race"))

    statuses = {response.status_code for response in responses}
    assert statuses <= {201, 409}, statuses
    assert 201 in statuses
    assert (Charge.objects.count(), Payment.objects.count()) == (1, 1)


def test_the_gateway_charges_once_per_key_under_a_race():
    charges = race(
        lambda i: (
            gateway.charge(
                amount=100, currency="USD", source="cust_123", idempotency_key="gw_race"
            ).charge_id
        ),
        count=10,
    )

    assert len(set(charges)) == 1
    assert Charge.objects.count() == 1
