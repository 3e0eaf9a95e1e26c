"""A body over ``DATA_UPLOAD_MAX_MEMORY_SIZE``: 413 problem details, nothing reserved or run."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from idempotency.models import IdempotencyRecord
from tests.testapp.views import Operation

pytestmark = pytest.mark.django_db(transaction=True)


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100)
def test_body_over_the_limit_is_413_problem_details_and_stores_nothing(api):
    body = json.dumps({"name": "a" * 100})
    response = api.post(
        "/test/widgets", body, content_type="application/json", headers={"Idempotency-Key": "k"}
    )

    assert response.status_code == 413
    assert response["Content-Type"] == "application/problem+json"
    problem = json.loads(response.content)
    assert problem["type"] == "urn:django-idempotency:problem:body-too-large"
    assert (problem["status"], problem["code"]) == (413, "request_body_too_large")
    assert Operation.calls == 0
    assert not IdempotencyRecord.objects.exists()


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100)
def test_body_within_the_limit_runs(api):
    body = json.dumps({"name": "a" * 50})
    response = api.post(
        "/test/widgets", body, content_type="application/json", headers={"Idempotency-Key": "k"}
    )
    assert response.status_code == 201


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100)
def test_file_uploads_are_exempt_as_in_django(api):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("big.bin", b"x" * 1000)
    response = api.post(
        "/test/widgets",
        {"name": "a", "attachment": upload},
        format="multipart",
        headers={"Idempotency-Key": "k"},
    )
    assert response.status_code == 201
