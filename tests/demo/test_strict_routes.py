"""The demo's routes and pages answer what its schema says: JSON 404s, strict page numbers."""

from __future__ import annotations

import pytest

from tests.demo.conftest import DATABASES

pytestmark = pytest.mark.django_db(databases=DATABASES)


@pytest.mark.parametrize("path", ["/orders/a.b", "/payments/0..0/", "/products/laptop.13"])
def test_an_id_with_a_dot_gets_the_apis_json_404(api, laptop, path):
    response = api.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert set(response.json()) == {"detail"}


@pytest.mark.parametrize(
    "query", ["page=", "page=1&page=2", "page=last", "page=x", "page=0", "page=1.0", "page=-1"]
)
def test_a_page_that_is_no_page_number_is_404(api, laptop, query):
    response = api.get(f"/products/?{query}")
    assert response.status_code == 404, response.content
    assert response.json() == {"detail": "Invalid page."}


@pytest.mark.parametrize("query", ["", "?page=1"])
def test_the_first_page_is_served(api, laptop, query):
    response = api.get(f"/products/{query}")
    assert response.status_code == 200
    assert [product["sku"] for product in response.json()["results"]] == ["laptop-13"]
