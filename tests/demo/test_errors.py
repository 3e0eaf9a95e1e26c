"""An unexpected error in the demo API: a problem for the client, a traceback in the console.

Run with DEBUG off, as pytest-django runs every test: the demo's production settings.
"""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.test import Client

from gateway.models import Charge
from payments import views
from payments.models import Payment
from tests.demo.conftest import DATABASES, api_for, post, problem

pytestmark = pytest.mark.django_db(transaction=True, databases=DATABASES)

SECRET = "card 4242 4242 4242 4242 exploded"


class Exploded(RuntimeError):
    """A bug nobody planned for."""


def explode(**kwargs):
    raise Exploded(SECRET)


@pytest.fixture(autouse=True)
def demo_urls(settings):
    # The demo's own urlconf, whose handler500 is under test (tests.urls adds test views only).
    settings.ROOT_URLCONF = "config.urls"


@pytest.fixture
def console():
    """What the console handler of ``config.settings.LOGGING`` prints, as text."""
    [handler] = [h for h in logging.getLogger("django").handlers if h.get_name() == "console"]
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


@pytest.fixture
def crashing_api(user, monkeypatch):
    monkeypatch.setattr(views, "take_payment", explode)
    client = api_for(user)
    client.raise_request_exception = False  # what a real client sees, not the exception
    return client


def test_an_unexpected_error_is_a_problem_without_the_traceback(crashing_api, customer):
    response = post(
        crashing_api, "/payments", {"customerId": "cust_123", "amount": 100, "currency": "USD"}
    )

    body = problem(response, 500, "server-error")
    assert body["title"] == "Internal server error"
    text = response.content.decode()
    assert SECRET not in text
    assert "Traceback" not in text
    assert "Exploded" not in text


def test_the_error_is_logged_with_its_traceback_on_the_console(crashing_api, customer, console):
    post(crashing_api, "/payments", {"customerId": "cust_123", "amount": 100, "currency": "USD"})

    logged = console.getvalue()
    assert "Internal Server Error: /payments" in logged
    assert "Traceback (most recent call last)" in logged
    assert f"Exploded: {SECRET}" in logged


def test_the_key_is_free_again_after_the_crash(crashing_api, customer, monkeypatch):
    body = {"customerId": "cust_123", "amount": 100, "currency": "USD"}
    assert post(crashing_api, "/payments", body, key="pay_after_crash").status_code == 500

    monkeypatch.undo()  # the bug is fixed; the client retries with the same key
    retried = post(crashing_api, "/payments", body, key="pay_after_crash")

    assert retried.status_code == 201
    assert Payment.objects.count() == Charge.objects.count() == 1


def test_a_failing_read_is_a_problem_too(user, monkeypatch):
    monkeypatch.setattr(views.PaymentOperations, "get_queryset", lambda self: explode())
    client = api_for(user)
    client.raise_request_exception = False

    problem(client.get("/payments"), 500, "server-error")


def test_a_failing_webhook_is_a_problem_too(monkeypatch):
    from payments import webhooks

    monkeypatch.setattr(webhooks, "parse_event", lambda body: explode())
    body = b"{}"
    response = Client(raise_request_exception=False).post(
        "/webhooks/gateway/",
        body,
        content_type="application/json",
        headers={"X-Gateway-Signature": webhooks.sign(body)},
    )

    problem(response, 500, "server-error")


def test_a_browser_still_gets_djangos_html_page(crashing_api, customer):
    response = post(
        crashing_api,
        "/payments",
        {"customerId": "cust_123", "amount": 100, "currency": "USD"},
        Accept="text/html,application/xhtml+xml,*/*;q=0.8",
    )

    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
    assert SECRET not in response.content.decode()
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
