"""The demo's published API: its OpenAPI schema (snapshotted) and its offline docs page."""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path

import pytest

pytest.importorskip("drf_spectacular")

from django.contrib.staticfiles import finders  # noqa: E402
from drf_spectacular.generators import SchemaGenerator  # noqa: E402
from drf_spectacular.renderers import OpenApiYamlRenderer  # noqa: E402
from drf_spectacular.validation import validate_schema  # noqa: E402

pytestmark = pytest.mark.spectacular

SNAPSHOT = Path(__file__).parent / "snapshots" / "openapi.yaml"
REGENERATE = (
    "UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_openapi_snapshot.py -p no:randomly"
)


def demo_schema() -> str:
    schema = SchemaGenerator(urlconf="config.urls").get_schema(request=None, public=True)
    validate_schema(schema)
    return OpenApiYamlRenderer().render(schema, renderer_context={}).decode()


def test_demo_schema_matches_the_snapshot():
    current = demo_schema()
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(current)
    if not SNAPSHOT.exists():
        pytest.fail(
            f"No schema snapshot at {SNAPSHOT}. Generate it with `{REGENERATE}`, review it and "
            "commit it."
        )
    diff = "".join(
        difflib.unified_diff(
            SNAPSHOT.read_text().splitlines(keepends=True),
            current.splitlines(keepends=True),
            fromfile="tests/snapshots/openapi.yaml (committed)",
            tofile="generated from config.urls",
        )
    )
    assert not diff, (
        "The demo's OpenAPI schema changed. If the change is intended, regenerate the snapshot "
        f"with `{REGENERATE}` and commit it.\n{diff}"
    )


def test_every_unsafe_demo_operation_documents_the_key():
    import yaml

    paths = yaml.safe_load(demo_schema())["paths"]
    posts = {path: item["post"] for path, item in paths.items() if "post" in item}
    protected = {path for path, op in posts.items() if "409" in op["responses"]}
    assert {"/payments/", "/orders/"} <= protected
    for path in protected:
        names = {(p["in"], p["name"]) for p in posts[path].get("parameters", [])}
        assert ("header", "Idempotency-Key") in names, path


def test_the_schema_is_served(client):
    response = client.get("/api/schema/", headers={"Accept": "application/vnd.oai.openapi+json"})
    assert response.status_code == 200
    assert response.json()["components"]["schemas"]["IdempotencyProblem"]


def test_the_docs_page_works_offline(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    # Swagger UI comes from the sidecar's local static files, never from a CDN.
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css")


def _validator(document, schema):
    import jsonschema

    return jsonschema.Draft7Validator({**schema, "components": document["components"]})


# Each DRF answer the demo's schema class documents, provoked: (method, path, headers, body).
DRF_ANSWERS = [
    pytest.param("get", "/payments/", {"Authorization": "Token nope"}, None, "401", id="401"),
    pytest.param("get", "/products/", {}, None, "401", id="401-no-credentials"),
    pytest.param("get", "/products/?page=99", "u1", None, "404", id="404-page"),
    pytest.param("get", "/products/?page=abc", "u1", None, "404", id="404-not-a-page"),
    pytest.param("get", "/products/nope/", "u1", None, "404", id="404-id"),
    pytest.param("get", "/payments/pmt_x/", "u1", None, "404", id="404-payment"),
    pytest.param("get", "/orders/", "u1:text/csv", None, "406", id="406"),
    pytest.param("post", "/orders/", "u1", "text/plain", "415", id="415"),
]


@pytest.mark.django_db(databases=["default", "gateway"])
@pytest.mark.parametrize(("method", "path", "headers", "body", "code"), DRF_ANSWERS)
def test_each_documented_drf_answer_is_what_the_demo_answers(method, path, headers, body, code):
    from rest_framework.test import APIClient

    from tests.demo.factories import UserFactory

    document = yaml_schema()
    if isinstance(headers, str):  # "u1" or "u1:<Accept>": a real user's token
        user, _, accept = headers.partition(":")
        headers = {"Authorization": f"Token {UserFactory(username=user).auth_token.key}"}
        if accept:
            headers["Accept"] = accept
    kwargs = {"headers": {**headers, "Idempotency-Key": "k1"}}
    if body is not None:
        kwargs.update(data="hello", content_type=body)
    response = getattr(APIClient(), method)(path, **kwargs)
    assert str(response.status_code) == code, response.content
    template = next(
        p for p in document["paths"] if re.fullmatch(_path_regex(p), path.split("?")[0])
    )
    documented = document["paths"][template][method]["responses"][code]
    media_type = response["Content-Type"].split(";")[0]
    assert media_type in documented["content"]
    _validator(document, documented["content"][media_type]["schema"]).validate(
        json.loads(response.content)
    )
    for name in documented.get("headers", {}):
        assert name in response


def _path_regex(template):
    return re.sub(r"\{[^}]+\}", "[^/]+", template)


def yaml_schema():
    import yaml

    return yaml.safe_load(demo_schema())


@pytest.mark.django_db(transaction=True, databases=["default", "gateway"])
def test_the_link_from_a_create_retrieves_what_it_made():
    from rest_framework.test import APIClient

    from tests.demo.factories import CustomerFactory, UserFactory

    document = yaml_schema()
    operations = {
        operation["operationId"]: (path, operation)
        for path, item in document["paths"].items()
        for operation in item.values()
    }
    link = document["paths"]["/payments/"]["post"]["responses"]["201"]["links"]["payments_retrieve"]
    template, _ = operations[link["operationId"]]
    CustomerFactory(customer_id="cust_123")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {UserFactory(username='u1').auth_token.key}")
    body = {"customerId": "cust_123", "amount": 100, "currency": "USD"}
    created = api.post("/payments/", body, format="json", headers={"Idempotency-Key": "k1"})
    assert created.status_code == 201
    path = template
    for name, expression in link["parameters"].items():
        pointer = expression.removeprefix("$response.body#/")
        path = path.replace(f"{{{name}}}", created.json()[pointer])
    fetched = api.get(path)
    assert fetched.status_code == 200
    assert fetched.json() == created.json()
