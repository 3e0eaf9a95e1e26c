"""``@idempotent`` on plain Django function views: the HTTP contract without DRF."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client, override_settings

from idempotency import signals
from idempotency.models import IdempotencyRecord
from idempotency.store import RecordStore
from tests.test_signals import captured, outcomes
from tests.testapp import plain_views
from tests.testapp.models import Widget
from tests.testapp.views import Operation

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.plain_urls")]

URL = "/plain/widgets/"
KEY = "plain-1"


@pytest.fixture
def client():
    return Client()


@pytest.fixture
def plain_store(clock, monkeypatch):
    store = RecordStore(clock=clock)
    for view in (plain_views.create_widget, plain_views.optional_widget):
        monkeypatch.setattr(view.idempotency, "store", store)
    return store


def post(client, body=None, key=KEY, url=URL, **headers):
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(
        url, json.dumps(body or {"name": "a"}), content_type="application/json", headers=headers
    )


def assert_problem(response, status, type_suffix):
    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    problem = json.loads(response.content)
    assert problem["type"] == f"urn:django-idempotency:problem:{type_suffix}"
    assert problem["status"] == status
    return problem


def test_new_key_runs_and_the_retry_replays(client):
    first = post(client)
    second = post(client)

    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in first
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert second["Location"] == first["Location"]
    assert second["Content-Type"] == "application/json"
    assert "session-ish" not in second.cookies
    assert Operation.calls == 1
    assert Widget.objects.count() == 1
    record = IdempotencyRecord.objects.get()
    assert (record.method, record.path, record.state) == ("POST", URL, "completed")


def test_json_key_order_does_not_change_the_fingerprint(client):
    headers = {"Idempotency-Key": KEY}
    client.post(URL, '{"name": "a", "size": 2}', content_type="application/json", headers=headers)
    replay = client.post(
        URL, '{ "size": 2, "name": "a" }', content_type="application/json", headers=headers
    )
    assert replay["Idempotent-Replayed"] == "true"


def test_another_payload_is_422_and_nothing_runs(client):
    post(client, {"name": "a"})
    problem = assert_problem(post(client, {"name": "b"}), 422, "key-reused")
    assert f"POST {URL}" in problem["detail"]
    assert Operation.calls == 1


def test_another_route_is_422(client):
    post(client)
    assert_problem(post(client, url="/plain/widgets/7/"), 422, "key-reused")


def test_form_bodies_are_compared_field_by_field(client):
    headers = {"Idempotency-Key": KEY}
    client.post(URL, {"name": "a", "size": "1"}, headers=headers)
    assert client.post(URL, {"size": "1", "name": "a"}, headers=headers).status_code == 201
    assert_problem(client.post(URL, {"name": "b"}, headers=headers), 422, "key-reused")


def test_a_held_key_is_409_with_retry_after(client, plain_store, clock):
    post(client, key="probe")
    fingerprint = IdempotencyRecord.objects.get(key="probe").fingerprint
    plain_store.reserve(
        scope="anonymous",
        key=KEY,
        fingerprint=fingerprint,
        method="POST",
        path=URL,
        lease=timedelta(seconds=30),
        expiry=timedelta(hours=1),
    )
    clock.advance(seconds=10)

    response = post(client)

    assert_problem(response, 409, "request-in-progress")
    assert response["Retry-After"] == "1"  # the RETRY_AFTER hint, not the lease's 20 s
    with override_settings(IDEMPOTENCY={"RETRY_AFTER": timedelta(minutes=2)}):
        assert post(client)["Retry-After"] == "20"  # never past the holder's lease
    assert Operation.calls == 1


def test_missing_key_is_400_when_required(client):
    assert_problem(post(client, key=None), 400, "key-missing")
    assert Operation.calls == 0
    assert not IdempotencyRecord.objects.exists()


def test_missing_key_runs_as_usual_when_optional(client):
    client.post("/plain/optional/")
    client.post("/plain/optional/")
    assert Operation.calls == 2
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize("raw", ["", "k" * 256, "a,b", "clé"])
def test_invalid_key_is_400_and_nothing_is_stored(client, raw):
    response = client.post(URL, "{}", content_type="application/json", HTTP_IDEMPOTENCY_KEY=raw)
    assert_problem(response, 400, "key-invalid")
    assert not IdempotencyRecord.objects.exists()


def test_options_choose_the_protected_methods(client):
    client.put("/plain/optional/", headers={"Idempotency-Key": "p"})
    replay = client.put("/plain/optional/", headers={"Idempotency-Key": "p"})
    assert replay["Idempotent-Replayed"] == "true"
    client.patch("/plain/optional/", headers={"Idempotency-Key": "p2"})
    client.patch("/plain/optional/", headers={"Idempotency-Key": "p2"})
    assert Operation.calls == 3


def test_options_set_the_lease(client):
    seen = []

    def on_reserved(sender, key, **kwargs):
        record = IdempotencyRecord.objects.get(key=key)
        seen.append(record.locked_until - record.created_at)

    signals.reserved.connect(on_reserved)
    try:
        client.post("/plain/optional/", headers={"Idempotency-Key": "lease"})
        post(client)
    finally:
        signals.reserved.disconnect(on_reserved)
    assert seen == [timedelta(seconds=5), timedelta(seconds=60)]


def test_a_custom_scope_separates_callers(client):
    client.post("/plain/tenant/", headers={"Idempotency-Key": "k", "X-Tenant": "a"})
    other = client.post("/plain/tenant/", headers={"Idempotency-Key": "k", "X-Tenant": "b"})
    same = client.post("/plain/tenant/", headers={"Idempotency-Key": "k", "X-Tenant": "a"})
    assert "Idempotent-Replayed" not in other
    assert same["Idempotent-Replayed"] == "true"
    assert set(IdempotencyRecord.objects.values_list("scope", flat=True)) == {"a", "b"}


def test_a_crash_rolls_back_and_releases_the_key(client):
    client.raise_request_exception = False
    assert post(client, {"behaviour": "crash"}).status_code == 500
    assert not Widget.objects.exists()
    assert not IdempotencyRecord.objects.exists()
    assert post(client, {"behaviour": "ok"}).status_code == 201


def test_a_raised_http404_releases_the_key(client):
    assert post(client, {"behaviour": "not-found"}).status_code == 404
    assert not IdempotencyRecord.objects.exists()
    assert not Widget.objects.exists()


def test_a_5xx_answer_rolls_back_and_releases_the_key(client):
    assert post(client, {"behaviour": "503"}).status_code == 503
    assert not Widget.objects.exists()
    assert not IdempotencyRecord.objects.exists()


def test_a_returned_4xx_is_stored_and_replayed(client):
    post(client, {"behaviour": "invalid"})
    replay = post(client, {"behaviour": "invalid"})
    assert replay.status_code == 400
    assert replay["Idempotent-Replayed"] == "true"


def test_a_streaming_response_is_stored_with_its_writes(client):
    response = post(client, {"behaviour": "stream"})
    replay = post(client, {"behaviour": "stream"})
    assert b"".join(response.streaming_content) == b"ab"
    assert replay.content == b"ab"
    assert Widget.objects.count() == 1
    assert IdempotencyRecord.objects.get().state == "completed"


def test_a_template_response_is_rendered_and_stored(client):
    first = post(client, {"behaviour": "template"})
    replay = post(client, {"behaviour": "template"})
    assert replay.content == first.content
    assert first.content.startswith(b"widget ")


def test_the_key_past_expiry_is_new(client, plain_store, clock):
    post(client)
    clock.advance(hours=24)
    assert "Idempotent-Replayed" not in post(client)
    assert Operation.calls == 2


def test_header_name_follows_settings(client):
    with override_settings(IDEMPOTENCY={"HEADER": "X-Request-Key"}):
        post(client, key=None, **{"X-Request-Key": "k"})
        replay = post(client, key=None, **{"X-Request-Key": "k"})
    assert replay["Idempotent-Replayed"] == "true"


def test_signals_are_sent_with_the_view_function_as_sender(client):
    with captured(*signals.OUTCOMES) as seen:
        post(client)
        post(client)
        post(client, {"name": "other"})
    assert outcomes(seen) == ["reserved", "completed", "replayed", "mismatch"]
    assert {sender for _, sender, _ in seen} == {plain_views.create_widget.idempotency.view}
    assert all(kwargs["request"].path == URL for _, _, kwargs in seen)


@pytest.fixture
def atomic_requests():
    connection.settings_dict["ATOMIC_REQUESTS"] = True
    yield
    connection.settings_dict["ATOMIC_REQUESTS"] = False


def test_under_atomic_requests_the_reservation_commits_on_its_own(client, atomic_requests):
    seen = []

    def on_reserved(sender, **kwargs):
        seen.append(connection.in_atomic_block)

    signals.reserved.connect(on_reserved)
    try:
        post(client)
        replay = post(client)
    finally:
        signals.reserved.disconnect(on_reserved)
    assert seen == [False]
    assert replay["Idempotent-Replayed"] == "true"
    assert Operation.calls == 1


def test_under_atomic_requests_unprotected_requests_keep_their_transaction(client, atomic_requests):
    seen = []

    def on_run():
        seen.append(connection.in_atomic_block)

    original = Operation.run
    Operation.run = staticmethod(on_run)
    try:
        client.get("/plain/optional/")
    finally:
        Operation.run = original
    assert seen == [True]
