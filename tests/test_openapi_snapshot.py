"""The demo's published API: its OpenAPI schema (snapshotted) and its offline docs page."""

from __future__ import annotations

import difflib
import os
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
