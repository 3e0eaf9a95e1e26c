from __future__ import annotations

import itertools
import json

import pytest
from rest_framework.test import APIClient

from tests.demo.factories import CustomerFactory, ProductFactory, UserFactory

# The demo's views touch the shop's database and the gateway's.
DATABASES = ["default", "gateway"]

_keys = itertools.count(1)


def new_key(prefix="key"):
    return f"{prefix}_{next(_keys)}"


def api_for(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user.auth_token.key}")
    return client


def post(client, path, body, key="default", **headers):
    """POST JSON with an Idempotency-Key (a fresh one unless given; None sends none)."""
    if key == "default":
        key = new_key()
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(path, body, format="json", headers=headers)


def problem(response, status, type_suffix):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = json.loads(response.content)
    assert body["type"] == f"urn:django-idempotency:problem:{type_suffix}"
    assert body["status"] == status
    return body


@pytest.fixture
def user():
    return UserFactory(username="u1")


@pytest.fixture
def api(user):
    return api_for(user)


@pytest.fixture
def customer():
    return CustomerFactory(customer_id="cust_123", name="Ada Lovelace")


@pytest.fixture
def laptop():
    return ProductFactory(sku="laptop-13", name="Laptop 13-inch", stock=3)


@pytest.fixture
def demo_faults(settings):
    settings.DEMO_FAULTS = True
