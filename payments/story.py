"""The retry story, "Without Idempotency / With Idempotency", played against the real views.

Each scenario sends one operation and retries it, twice over: once through the view without
``IdempotentMixin`` and without a key (what a server without idempotency does), once through
the routed view with one ``Idempotency-Key`` for the operation and its retry. Both run the same
serializers, services, gateway and database; only the mixin differs. What each produced is
counted from the database, the gateway's ledger and the outbox.

The last scenario delivers the order confirmation message twice, as a broker may: once to the
task's body alone (what a Celery task without ``IdempotentTask`` runs for each delivery), once
to the task itself, run in process as a worker runs it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core import mail
from django.http.response import HttpResponseBase
from django.test import override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIRequestFactory

from demo_api.api import new_public_id
from demo_api.faults import FAULT_HEADER, Fault
from gateway.models import Charge
from idempotency.mixins import REPLAYED_HEADER
from orders.models import Order, Product
from orders.tasks import send_order_confirmation
from orders.views import OrderOperations, OrderViewSet
from payments.models import Customer, Payment
from payments.views import PaymentOperations, PaymentViewSet

# The story's own actors, apart from the demo's, so its counts never mix with anyone's.
STORY_USER = "story"
STORY_CUSTOMER = "cust_story"
STORY_SKU = "story-mug"
STORY_STOCK = 100

View = Callable[..., HttpResponseBase]
# One delivery of the order confirmation message (its order id) to a consumer.
Consumer = Callable[[str], object]


@dataclass(frozen=True)
class Tally:
    """What one way of running a scenario left behind, and what the client was answered."""

    charges: int
    payments: int
    orders: int
    stock: int  # units reserved
    emails: int
    answers: tuple[str, ...]


@dataclass(frozen=True)
class Scenario:
    title: str
    without: Tally
    with_key: Tally


@dataclass(frozen=True)
class Attempt:
    fault: Fault | None = None
    lost: bool = False  # the client never sees this answer


@dataclass(frozen=True)
class Operation:
    path: str
    body: dict[str, Any]
    without: View
    with_key: View


class Story:
    def __init__(self) -> None:
        user, _ = get_user_model().objects.get_or_create(
            username=STORY_USER, defaults={"email": f"{STORY_USER}@example.com"}
        )
        self.user = user
        self.token = Token.objects.get_or_create(user=user)[0].key
        self.customer, _ = Customer.objects.get_or_create(
            customer_id=STORY_CUSTOMER, defaults={"name": "Story Customer"}
        )
        # Only the story orders this product: topping it up disturbs no one.
        self.product, _ = Product.objects.update_or_create(
            sku=STORY_SKU, defaults={"name": "Story mug", "stock": STORY_STOCK}
        )
        self.factory = APIRequestFactory()

    def play(self) -> list[Scenario]:
        payment = Operation(
            path="/payments",
            body={"customerId": STORY_CUSTOMER, "amount": 100, "currency": "USD"},
            without=PaymentOperations.as_view({"post": "create"}),
            with_key=PaymentViewSet.as_view({"post": "create"}),
        )
        order = Operation(
            path="/orders",
            body={"userId": STORY_USER, "sku": STORY_SKU, "quantity": 1},
            without=OrderOperations.as_view({"post": "create"}),
            with_key=OrderViewSet.as_view({"post": "create"}),
        )
        lost = (Attempt(lost=True), Attempt())
        with _story_settings():
            return [
                self.scenario("payment: response lost, retried", payment, lost),
                self.scenario(
                    "payment: crash after the charge, retried",
                    payment,
                    (Attempt(fault=Fault.CRASH_AFTER_CHARGE), Attempt()),
                ),
                self.scenario("order: response lost, retried", order, lost),
                self.scenario(
                    "order: crash before the commit, retried",
                    order,
                    (Attempt(fault=Fault.CRASH_BEFORE_COMMIT), Attempt()),
                ),
                self.delivered_twice("order email: message delivered twice"),
            ]

    def scenario(self, title: str, operation: Operation, attempts: tuple[Attempt, ...]) -> Scenario:
        # A new key for each operation, as a client makes one; never one an earlier run used.
        key = f"story_{uuid.uuid4().hex[:16]}"
        return Scenario(
            title=title,
            without=self.run(operation.without, operation, attempts, key=None),
            with_key=self.run(operation.with_key, operation, attempts, key=key),
        )

    def delivered_twice(self, title: str) -> Scenario:
        return Scenario(
            title=title,
            without=self.deliver(send_order_confirmation.run, times=2),
            with_key=self.deliver(_through_the_guard, times=2),
        )

    def run(
        self, view: View, operation: Operation, attempts: tuple[Attempt, ...], key: str | None
    ) -> Tally:
        return self.measure(lambda: [self.send(view, operation, a, key) for a in attempts])

    def deliver(self, consumer: Consumer, times: int) -> Tally:
        # An order whose confirmation is due, made directly (no stock taken, no message sent):
        # the tally counts only what the deliveries did.
        order = Order.objects.create(
            order_id=new_public_id("ord"),
            user=self.user,
            product=self.product,
            quantity=1,
            status=Order.Status.CONFIRMED,
        )
        return self.measure(lambda: [self.delivery(consumer, order.order_id) for _ in range(times)])

    def delivery(self, consumer: Consumer, order_id: str) -> str:
        sent = self.emails()
        consumer(order_id)
        return "emailed" if self.emails() > sent else "no email"

    def measure(self, act: Callable[[], list[str]]) -> Tally:
        before = self.counts()
        answers = act()
        after = self.counts()
        charges, payments, orders, stock, emails = (
            a - b for a, b in zip(after, before, strict=True)
        )
        return Tally(charges, payments, orders, -stock, emails, tuple(answers))

    def send(self, view: View, operation: Operation, attempt: Attempt, key: str | None) -> str:
        headers = {"Authorization": f"Token {self.token}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        if attempt.fault is not None:
            headers[FAULT_HEADER] = attempt.fault.value
        request = self.factory.post(operation.path, operation.body, format="json", headers=headers)
        response = view(request)
        answer = str(response.status_code)
        if response.get(REPLAYED_HEADER) == "true":
            answer += " replayed"
        return f"({answer}, lost)" if attempt.lost else answer

    def counts(self) -> tuple[int, int, int, int, int]:
        return (
            Charge.objects.filter(source=STORY_CUSTOMER).count(),
            Payment.objects.filter(created_by=self.user).count(),
            Order.objects.filter(user=self.user).count(),
            Product.objects.values_list("stock", flat=True).get(pk=self.product.pk),
            self.emails(),
        )

    def emails(self) -> int:
        return len(getattr(mail, "outbox", []))


def _through_the_guard(order_id: str) -> object:
    # apply(): the task run here, through IdempotentTask, as a worker runs a delivery.
    return send_order_confirmation.apply((order_id,)).get()


@contextmanager
def _story_settings() -> Iterator[None]:
    # Faults on for the story's own requests; emails counted in memory, not sent anywhere, so
    # the tasks that send them run here, eagerly, even where a broker is configured.
    celery = send_order_confirmation.app.conf
    eager, celery.task_always_eager = celery.task_always_eager, True
    try:
        with override_settings(
            DEMO_FAULTS=True, EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"
        ):
            yield
    finally:
        celery.task_always_eager = eager


COLUMNS = ("charges", "payments", "orders", "stock", "emails")


def render(scenarios: list[Scenario]) -> str:
    """The scenarios as a side-by-side table, then what the client was answered."""
    title_width = max(len(scenario.title) for scenario in scenarios)
    group = " ".join(COLUMNS)
    lines = [
        f"{'':{title_width}} | {'without idempotency':^{len(group)}} | "
        f"{'with idempotency':^{len(group)}}",
        f"{'':{title_width}} | {group} | {group}",
        f"{'-' * title_width}-+-{'-' * len(group)}-+-{'-' * len(group)}",
    ]
    for scenario in scenarios:
        lines.append(
            f"{scenario.title:{title_width}} | {_numbers(scenario.without)} | "
            f"{_numbers(scenario.with_key)}"
        )
    lines.append("")
    lines.append("What the client was answered (first attempt, retry); what each delivery did:")
    for scenario in scenarios:
        lines.append(
            f"  {scenario.title:{title_width}}  without: {', '.join(scenario.without.answers):21}"
            f"with: {', '.join(scenario.with_key.answers)}"
        )
    return "\n".join(line.rstrip() for line in lines)


def _numbers(tally: Tally) -> str:
    values = (tally.charges, tally.payments, tally.orders, -tally.stock, tally.emails)
    return " ".join(f"{value:>{len(name)}}" for name, value in zip(COLUMNS, values, strict=True))
