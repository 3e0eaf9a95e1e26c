"""The retry story, "Without Idempotency / With Idempotency", played against the real views.

Each scenario sends one operation and retries it, twice over: once through the view without
``IdempotentMixin`` and without a key (what a server without idempotency does), once through
the routed view with one ``Idempotency-Key`` for the operation and its retry. Both run the same
serializers, services, gateway and database; only the mixin differs. What each produced is
counted from the database, the gateway's ledger and the outbox.
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

from demo_api.faults import FAULT_HEADER, Fault
from gateway.models import Charge
from idempotency.mixins import REPLAYED_HEADER
from orders.models import Order, Product
from orders.views import OrderOperations, OrderViewSet
from payments.models import Customer, Payment
from payments.views import PaymentOperations, PaymentViewSet

# The story's own actors, apart from the demo's, so its counts never mix with anyone's.
STORY_USER = "story"
STORY_CUSTOMER = "cust_story"
STORY_SKU = "story-mug"
STORY_STOCK = 100

View = Callable[..., HttpResponseBase]


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
            ]

    def scenario(self, title: str, operation: Operation, attempts: tuple[Attempt, ...]) -> Scenario:
        # A new key for each operation, as a client makes one; never one an earlier run used.
        key = f"story_{uuid.uuid4().hex[:16]}"
        return Scenario(
            title=title,
            without=self.run(operation.without, operation, attempts, key=None),
            with_key=self.run(operation.with_key, operation, attempts, key=key),
        )

    def run(
        self, view: View, operation: Operation, attempts: tuple[Attempt, ...], key: str | None
    ) -> Tally:
        before = self.counts()
        answers = [self.send(view, operation, attempt, key) for attempt in attempts]
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
            len(getattr(mail, "outbox", [])),
        )


@contextmanager
def _story_settings() -> Iterator[None]:
    # Faults on for the story's own requests; emails counted in memory, not sent anywhere.
    with override_settings(
        DEMO_FAULTS=True, EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"
    ):
        yield


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
    lines.append("What the client was answered (first attempt, retry):")
    for scenario in scenarios:
        lines.append(
            f"  {scenario.title:{title_width}}  without: {', '.join(scenario.without.answers):21}"
            f"with: {', '.join(scenario.with_key.answers)}"
        )
    return "\n".join(line.rstrip() for line in lines)


def _numbers(tally: Tally) -> str:
    values = (tally.charges, tally.payments, tally.orders, -tally.stock, tally.emails)
    return " ".join(f"{value:>{len(name)}}" for name, value in zip(COLUMNS, values, strict=True))
