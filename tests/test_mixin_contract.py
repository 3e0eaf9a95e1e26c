"""One test per row of the HTTP contract (docs/http-contract.md)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import override_settings

from idempotency.models import IdempotencyRecord
from tests.factories import UserFactory
from tests.testapp.models import Widget
from tests.testapp.views import Operation

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/test/widgets"
KEY = "pay_8f7a9c2"


def post(api, body=None, key=KEY, url=URL, **extra):
    headers = {} if key is None else {"Idempotency-Key": key}
    return api.post(url, body or {"name": "a"}, format="json", headers=headers, **extra)


def assert_problem(response, status, type_suffix):
    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    problem = json.loads(response.content)
    assert problem["type"] == f"urn:django-idempotency:problem:{type_suffix}"
    assert problem["status"] == status
    assert problem["title"] and problem["detail"]
    return problem


def test_new_key_runs_once_and_answers_unchanged(api):
    response = post(api)

    assert response.status_code == 201
    assert response.json() == {"id": Widget.objects.get().pk, "name": "a", "size": 1}
    assert "Idempotent-Replayed" not in response
    assert response.cookies["session-ish"].value == "secret"
    record = IdempotencyRecord.objects.get()
    assert (record.key, record.state, record.response_status) == (KEY, "completed", 201)
    assert (record.method, record.path) == ("POST", URL)


def test_completed_key_replays_status_body_and_allowed_headers(api):
    first = post(api)
    second = post(api)

    assert Operation.calls == 1
    assert Widget.objects.count() == 1
    assert second.status_code == 201
    assert second.content == first.content
    assert second["Idempotent-Replayed"] == "true"
    assert second["Content-Type"] == first["Content-Type"]
    assert second["Location"] == first["Location"]
    # Never replayed: cookies, Date, and headers not in REPLAYED_HEADERS.
    assert "session-ish" not in second.cookies
    assert "X-Not-Replayed" not in second


def test_replayed_headers_follow_settings(api):
    with override_settings(IDEMPOTENCY={"REPLAYED_HEADERS": ["Content-Type", "X-Not-Replayed"]}):
        post(api)
        replay = post(api)
    assert replay["X-Not-Replayed"] == "1"
    assert "Location" not in replay


def test_set_cookie_is_never_replayed_even_if_configured(api):
    with override_settings(IDEMPOTENCY={"REPLAYED_HEADERS": ["Content-Type", "Set-Cookie"]}):
        post(api)
        replay = post(api)
    assert "session-ish" not in replay.cookies
    assert IdempotencyRecord.objects.get().response_headers != []
    assert all(
        name.lower() != "set-cookie" for name, _ in IdempotencyRecord.objects.get().response_headers
    )


def hold_key(api, store, lease_seconds=30):
    """Reserve KEY in ``store`` as a concurrent ``post(api)`` would, and leave it in progress."""
    post(api, key="fingerprint-probe")
    fingerprint = IdempotencyRecord.objects.get(key="fingerprint-probe").fingerprint
    IdempotencyRecord.objects.all().delete()
    store.reserve(
        scope="anonymous",
        key=KEY,
        fingerprint=fingerprint,
        method="POST",
        path=URL,
        lease=timedelta(seconds=lease_seconds),
        expiry=timedelta(hours=1),
    )
    return Operation.calls


def test_key_held_by_another_request_is_409_with_retry_after(api, clocked_store, clock):
    calls_before = hold_key(api, clocked_store)
    clock.advance(seconds=10.5)

    response = post(api)

    problem = assert_problem(response, 409, "request-in-progress")
    # The RETRY_AFTER hint (1 s by default), not the 20 s left of the holder's lease.
    assert response["Retry-After"] == "1"
    assert problem["retry_after"] == 1
    assert "still being processed" in problem["detail"]
    assert Operation.calls == calls_before
    assert IdempotencyRecord.objects.get().state == "in_progress"


def test_retry_after_follows_the_hint_but_never_outlasts_the_lease(api, clocked_store, clock):
    hold_key(api, clocked_store)
    clock.advance(seconds=10.5)
    with override_settings(IDEMPOTENCY={"RETRY_AFTER": timedelta(seconds=5)}):
        assert post(api)["Retry-After"] == "5"
    with override_settings(IDEMPOTENCY={"RETRY_AFTER": timedelta(minutes=5)}):
        response = post(api)
    assert response["Retry-After"] == "20"  # the lease's 19.5 s left, rounded up
    assert json.loads(response.content)["retry_after"] == 20


def test_retry_after_is_at_least_one_second(api, clocked_store, clock):
    hold_key(api, clocked_store)
    clock.advance(seconds=29.9)
    assert post(api)["Retry-After"] == "1"


def test_same_key_different_payload_is_422_and_nothing_runs(api):
    post(api, {"name": "a", "size": 100})
    response = post(api, {"name": "a", "size": 500})

    problem = assert_problem(response, 422, "key-reused")
    assert "POST /test/widgets" in problem["detail"]
    assert Operation.calls == 1
    assert Widget.objects.get().size == 100


def test_same_key_on_another_route_is_422(api):
    post(api)
    assert_problem(post(api, url="/test/other-widgets/"), 422, "key-reused")
    assert_problem(post(api, url="/test/widgets/7/"), 422, "key-reused")
    assert Operation.calls == 1


def test_same_key_with_another_method_is_422(api):
    post(api)
    response = api.patch(URL, {"name": "a"}, format="json", headers={"Idempotency-Key": KEY})
    assert_problem(response, 422, "key-reused")
    assert Operation.calls == 1


def test_same_route_with_and_without_trailing_slash_is_one_operation(api):
    post(api, url="/test/widgets")
    replay = post(api, url="/test/widgets/")
    assert replay["Idempotent-Replayed"] == "true"
    assert Operation.calls == 1


def test_key_order_and_whitespace_do_not_change_the_fingerprint(api):
    headers = {"Idempotency-Key": KEY}
    api.post(URL, '{"name": "a", "size": 2}', content_type="application/json", headers=headers)
    replay = api.post(
        URL, '{ "size":2,\n "name":"a" }', content_type="application/json", headers=headers
    )
    assert replay["Idempotent-Replayed"] == "true"
    assert Operation.calls == 1


def test_missing_key_on_required_view_is_400_and_nothing_runs(api):
    response = post(api, key=None)
    assert_problem(response, 400, "key-missing")
    assert Operation.calls == 0
    assert not IdempotencyRecord.objects.exists()


def test_missing_key_on_optional_view_runs_as_without_the_mixin(api):
    first = post(api, key=None, url="/test/optional-widgets/")
    second = post(api, key=None, url="/test/optional-widgets/")
    assert (first.status_code, second.status_code) == (201, 201)
    assert Operation.calls == 2
    assert not IdempotencyRecord.objects.exists()


def test_optional_view_still_protects_requests_that_send_a_key(api):
    post(api, url="/test/optional-widgets/")
    assert post(api, url="/test/optional-widgets/")["Idempotent-Replayed"] == "true"
    assert Operation.calls == 1


def test_required_can_be_turned_off_in_settings(api):
    with override_settings(IDEMPOTENCY={"REQUIRED": False}):
        assert post(api, key=None).status_code == 201


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "k" * 256,
        "clé",
        "tab\there",
        "has space",
        "a,b",
        "key1, key2",
        '"unterminated',
        '"bad\\escape"',
        '""',
        "line\x7fdel",
    ],
)
def test_invalid_keys_are_400_and_nothing_is_stored(api, raw):
    response = api.post(URL, {"name": "a"}, format="json", HTTP_IDEMPOTENCY_KEY=raw)
    assert_problem(response, 400, "key-invalid")
    assert Operation.calls == 0
    assert not IdempotencyRecord.objects.exists()


def test_longest_allowed_key_is_accepted(api):
    assert post(api, key="k" * 255).status_code == 201


def test_max_key_length_follows_settings(api):
    with override_settings(IDEMPOTENCY={"MAX_KEY_LENGTH": 8}):
        assert_problem(post(api, key="k" * 9), 400, "key-invalid")
        assert post(api, key="k" * 8).status_code == 201


def test_structured_field_string_names_the_same_key(api):
    post(api, key="abc")
    replay = post(api, key='"abc"')
    assert replay["Idempotent-Replayed"] == "true"
    assert IdempotencyRecord.objects.get().key == "abc"


def test_structured_field_escapes_are_unescaped(api):
    post(api, key='"a\\"b"')
    assert IdempotencyRecord.objects.get().key == 'a"b'


def test_rejected_by_authentication_reserves_nothing(api):
    response = post(api, url="/test/private-widgets/")
    assert response.status_code in (401, 403)
    assert response["Content-Type"] == "application/json"
    assert not IdempotencyRecord.objects.exists()
    assert Operation.calls == 0


def test_rejected_by_throttling_reserves_nothing(api):
    url = "/test/throttled-widgets/"
    assert post(api, url=url, key="t1").status_code == 201
    assert post(api, url=url, key="t2").status_code == 201
    response = post(api, url=url, key="t3")
    assert response.status_code == 429
    assert set(IdempotencyRecord.objects.values_list("key", flat=True)) == {"t1", "t2"}


def test_validation_error_leaves_the_key_free(api):
    response = post(api, {"name": ""})
    assert response.status_code == 400
    assert "name" in response.json()
    assert not IdempotencyRecord.objects.exists()

    corrected = post(api, {"name": "fixed"})
    assert corrected.status_code == 201
    assert "Idempotent-Replayed" not in corrected


def test_malformed_json_is_the_usual_400_and_leaves_the_key_free(api):
    response = api.post(
        URL, '{"name": ', content_type="application/json", headers={"Idempotency-Key": KEY}
    )
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    assert not IdempotencyRecord.objects.exists()
    assert post(api).status_code == 201


def test_unsupported_media_type_stores_nothing(api):
    response = api.post(URL, "name=a", content_type="text/plain", headers={"Idempotency-Key": KEY})
    assert response.status_code == 415
    assert not IdempotencyRecord.objects.exists()


def test_operation_that_raises_rolls_back_and_releases_the_key(api):
    api.raise_request_exception = False
    response = post(api, {"name": "a", "behaviour": "crash"})
    assert response.status_code == 500
    assert not Widget.objects.exists()
    assert not IdempotencyRecord.objects.exists()

    retry = post(api, {"name": "a"})
    assert retry.status_code == 201
    assert Operation.calls == 2


def test_operation_that_raises_propagates_the_error(api):
    with pytest.raises(RuntimeError, match="operation crashed"):
        post(api, {"name": "a", "behaviour": "crash"})
    assert not IdempotencyRecord.objects.exists()


def test_operation_answering_5xx_rolls_back_and_releases_the_key(api):
    response = post(api, {"name": "a", "behaviour": "503"})
    assert response.status_code == 503
    assert not Widget.objects.exists()
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize(("behaviour", "status"), [("ok", 201), ("409", 409), ("not-found", 404)])
def test_2xx_and_4xx_outcomes_are_stored_and_replayed(api, behaviour, status):
    first = post(api, {"name": "a", "behaviour": behaviour})
    replay = post(api, {"name": "a", "behaviour": behaviour})
    assert first.status_code == replay.status_code == status
    assert replay.content == first.content
    assert replay["Idempotent-Replayed"] == "true"
    assert Operation.calls == 1


def test_raised_4xx_outcome_rolls_back_the_operation_writes(api):
    post(api, {"name": "a", "behaviour": "not-found"})
    assert not Widget.objects.exists()
    assert IdempotencyRecord.objects.get().response_status == 404


def test_same_key_from_another_user_is_an_independent_operation(api):
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    api.force_authenticate(alice)
    alice_response = post(api, {"name": "alice"}, url="/test/private-widgets/")
    api.force_authenticate(bob)
    bob_response = post(api, {"name": "alice"}, url="/test/private-widgets/")

    assert "Idempotent-Replayed" not in bob_response
    assert bob_response.json()["id"] != alice_response.json()["id"]
    assert Operation.calls == 2
    assert IdempotencyRecord.objects.filter(key=KEY).count() == 2


def test_anonymous_caller_never_sees_an_authenticated_callers_response(api):
    api.force_authenticate(UserFactory(username="carol"))
    post(api, {"name": "carol"})
    api.force_authenticate(None)
    anonymous = post(api, {"name": "carol"})
    assert "Idempotent-Replayed" not in anonymous
    assert Operation.calls == 2


def test_key_past_expiry_is_treated_as_new(api, clocked_store, clock):
    post(api, {"name": "a", "size": 1})
    clock.advance(hours=24)
    response = post(api, {"name": "a", "size": 2})  # even another payload: the key is new
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert Operation.calls == 2
    record = IdempotencyRecord.objects.get()
    assert json.loads(bytes(record.response_body))["size"] == 2


def test_key_just_before_expiry_still_replays(api, clocked_store, clock):
    post(api)
    clock.advance(hours=23, minutes=59)
    assert post(api)["Idempotent-Replayed"] == "true"


def test_expiry_follows_settings(api, clocked_store, clock):
    with override_settings(IDEMPOTENCY={"EXPIRY": timedelta(minutes=5)}):
        post(api)
        clock.advance(minutes=5)
        assert "Idempotent-Replayed" not in post(api)
    assert Operation.calls == 2


def test_unprotected_methods_pass_through(api):
    response = api.put(URL, {"name": "a"}, format="json", headers={"Idempotency-Key": KEY})
    assert response.status_code == 200
    api.put(URL, {"name": "a"}, format="json", headers={"Idempotency-Key": KEY})
    assert Operation.calls == 2
    assert not IdempotencyRecord.objects.exists()


def test_methods_are_configurable_per_view(api):
    url = "/test/put-widgets/"
    api.put(url, {}, format="json", headers={"Idempotency-Key": KEY})
    replay = api.put(url, {}, format="json", headers={"Idempotency-Key": KEY})
    assert replay["Idempotent-Replayed"] == "true"
    assert post(api, url=url, key=None).status_code == 201  # POST not protected here
    assert Operation.calls == 2


def test_patch_is_protected_by_default(api):
    api.patch(URL, {}, format="json", headers={"Idempotency-Key": KEY})
    replay = api.patch(URL, {}, format="json", headers={"Idempotency-Key": KEY})
    assert replay["Idempotent-Replayed"] == "true"
    assert Operation.calls == 1


def test_header_name_follows_settings(api):
    with override_settings(IDEMPOTENCY={"HEADER": "X-Request-Key"}):
        api.post(URL, {"name": "a"}, format="json", headers={"X-Request-Key": "k1"})
        replay = api.post(URL, {"name": "a"}, format="json", headers={"X-Request-Key": "k1"})
        assert replay["Idempotent-Replayed"] == "true"
        assert_problem(post(api), 400, "key-missing")


def test_viewset_create_and_actions_are_protected(api):
    created = api.post(
        "/test/viewset-widgets/", {"name": "v"}, format="json", headers={"Idempotency-Key": "c"}
    )
    pk = created.json()["id"]
    url = f"/test/viewset-widgets/{pk}/grow/"
    api.post(url, {}, format="json", headers={"Idempotency-Key": "g"})
    replay = api.post(url, {}, format="json", headers={"Idempotency-Key": "g"})
    assert replay["Idempotent-Replayed"] == "true"
    assert Widget.objects.get().size == 2  # grown once, not twice
    assert_problem(api.post(url, {}, format="json"), 400, "key-missing")


def test_action_can_override_settings_through_action_kwargs(api):
    response = api.post("/test/viewset-widgets/ping/", {}, format="json")
    assert response.status_code == 200


def test_replay_ignores_the_accept_header_of_the_retry(api):
    first = post(api)
    replay = api.post(
        URL,
        {"name": "a"},
        format="json",
        headers={"Idempotency-Key": KEY},
        HTTP_ACCEPT="text/html",
    )
    assert replay.content == first.content
    assert replay["Content-Type"] == "application/json"


@pytest.mark.parametrize("key", [None, KEY, "not a valid key"])
def test_a_method_the_view_does_not_have_is_405_whatever_the_key(api, key):
    # PATCH is protected by default, but this route has no PATCH operation to protect.
    headers = {} if key is None else {"Idempotency-Key": key}
    response = api.patch("/test/viewset-widgets/", {}, format="json", headers=headers)
    assert response.status_code == 405
    assert "POST" in response["Allow"]
    assert not IdempotencyRecord.objects.exists()


def test_a_download_is_replayed_with_its_file_name():
    """Content-Disposition describes the result (the file name): replayed by default."""
    from django.http import HttpResponse
    from django.test import RequestFactory

    from idempotency.decorators import idempotent

    @idempotent
    def export(request):
        response = HttpResponse(b"id,amount\n1,100\n", content_type="text/csv", status=201)
        response["Content-Disposition"] = 'attachment; filename="payments.csv"'
        return response

    first = export(RequestFactory().post("/exports", HTTP_IDEMPOTENCY_KEY="export-1"))
    replay = export(RequestFactory().post("/exports", HTTP_IDEMPOTENCY_KEY="export-1"))
    assert replay["Idempotent-Replayed"] == "true"
    assert replay["Content-Disposition"] == first["Content-Disposition"]
    assert replay.content == first.content
