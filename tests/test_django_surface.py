"""The Django-surface matrix: one test (or a pair) per path a real Django app takes.

Each row drives the DRF mixin and ``@idempotent`` (``ENTRY_POINTS``) and, where it applies,
``run_once``, on SQLite and on PostgreSQL. The contract table (tests/test_mixin_contract.py)
says what a key does; this module says what happens around it: streaming and file responses,
``on_commit``, savepoints, a caught ``IntegrityError``, nested guards, a second database,
refusals raised inside the operation, object permissions, ``ATOMIC_REQUESTS``, unimplemented
methods, content negotiation, form and multipart bodies, ``USE_TZ=False``.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client, override_settings
from rest_framework.test import APIClient

from gateway.models import Charge
from idempotency import signals
from idempotency.fingerprints import canonical, hash_document
from idempotency.models import IdempotencyRecord
from idempotency.operations import run_once
from idempotency.store import RecordStore
from tests.factories import UserFactory
from tests.testapp import surface_views
from tests.testapp.models import Widget
from tests.testapp.views import Operation

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "gateway"]),
    pytest.mark.urls("tests.surface_urls"),
]

ENTRY_POINTS = ["/mixin", "/function"]
KEY = "surface-1"


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


@pytest.fixture(autouse=True)
def _reset_callbacks():
    surface_views.committed.clear()


@pytest.fixture
def atomic_requests():
    connection.settings_dict["ATOMIC_REQUESTS"] = True
    yield
    connection.settings_dict["ATOMIC_REQUESTS"] = False


def send(client, url, kind="ok", key=KEY, name="w", **extra):
    headers = {} if key is None else {"Idempotency-Key": key}
    body = json.dumps({"kind": kind, "name": name})
    return client.post(url, body, content_type="application/json", headers=headers, **extra)


def problem_type(response):
    assert response["Content-Type"] == "application/problem+json"
    return json.loads(response.content)["type"].rsplit(":", 1)[1]


def records():
    return list(IdempotencyRecord.objects.values_list("state", "response_status"))


# Streaming and file responses ----------------------------------------------------------------


@pytest.mark.parametrize("url", ENTRY_POINTS)
def test_a_streaming_response_commits_its_writes_and_replays_the_same_bytes(client, url):
    first = send(client, url, "stream")
    body = b"".join(first.streaming_content)
    widget = Widget.objects.get()

    replay = send(client, url, "stream")

    assert body == f"chunk-0-{widget.pk};chunk-1-{widget.pk};chunk-2-{widget.pk};".encode()
    assert replay.content == body
    assert replay["Content-Type"] == "text/plain"
    assert replay["Idempotent-Replayed"] == "true"
    assert Operation.calls == 1
    assert records() == [("completed", 200)]


@pytest.mark.parametrize("url", ENTRY_POINTS)
def test_a_file_response_commits_its_writes_and_replays_the_file(client, url):
    first = send(client, url, "file")
    body = b"".join(first.streaming_content)
    replay = send(client, url, "file")

    assert body == f"file of {Widget.objects.get().pk}".encode()
    assert replay.content == body
    assert Operation.calls == 1


@pytest.mark.parametrize("url", ENTRY_POINTS)
def test_a_response_over_the_stored_body_limit_rolls_back_and_frees_the_key(client, url):
    with override_settings(IDEMPOTENCY={"MAX_STORED_BODY": 4096}):
        response = send(client, url, "huge-stream")

    assert response.status_code == 500
    assert problem_type(response) == "response-not-storable"
    assert not Widget.objects.exists()
    assert records() == []


# Transactions: on_commit, savepoints, caught errors, a second database -------------------------


@pytest.mark.parametrize("url", ENTRY_POINTS)
def test_on_commit_callbacks_run_once_after_the_commit(client, url):
    send(client, url, "on-commit", name="first")
    send(client, url, "on-commit", name="first")

    assert surface_views.committed == ["first"]
    assert Operation.calls == 1


@pytest.mark.parametrize("url", ENTRY_POINTS)
def test_an_on_commit_callback_that_raises_never_turns_a_stored_outcome_into_lease_lost(
    client, url, caplog
):
    first = send(client, url, "on-commit-raises")
    replay = send(client, url, "on-commit-raises")

    assert first.status_code == 201
    assert replay.status_code == 201
    assert replay.content == first.content
    assert replay["Idempotent-Replayed"] == "true"
    assert Operation.calls == 1
    assert records() == [("completed", 201)]
    assert "on_commit callback raised after the outcome was stored" in caplog.text
    assert "lease lost" not in caplog.text


def test_run_once_keeps_its_stored_result_when_an_on_commit_callback_raises(caplog):
    from django.db import transaction

    def charge():
        Operation.run()
        transaction.on_commit(surface_views._raise_after_commit)
        return {"charged": 1}

    assert run_once(charge, scope="surface", key="evt-1") == {"charged": 1}
    assert run_once(charge, scope="surface", key="evt-1") == {"charged": 1}
    assert Operation.calls == 1
    assert records() == [("completed", 200)]


@pytest.mark.parametrize("url", ENTRY_POINTS)
def test_a_savepoint_the_operation_rolls_back_keeps_the_rest_of_its_writes(client, url):
    first = send(client, url, "savepoint")
    replay = send(client, url, "savepoint")

    assert first.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert list(Widget.objects.values_list("name", flat=True)) == ["w"]


@pytest.mark.parametrize("url", ENTRY_POINTS)
def test_a_caught_integrity_error_without_savepoint_is_a_problem_not_an_opaque_500(
    client, url, caplog
):
    response = send(client, url, "caught-integrity-error")

    assert response.status_code == 500
    assert problem_type(response) == "transaction-aborted"
    assert "transaction.atomic()" in caplog.text
    assert not Widget.objects.exists()
    assert records() == []  # released: a retry runs again


@pytest.mark.parametrize("url", ENTRY_POINTS)
def test_a_caught_integrity_error_inside_a_savepoint_keeps_the_views_answer(client, url):
    first = send(client, url, "caught-integrity-error-savepoint")
    replay = send(client, url, "caught-integrity-error-savepoint")

    assert first.status_code == 409
    assert replay.status_code == 409
    assert replay.content == first.content
    assert Widget.objects.count() == 1
    assert records() == [("completed", 409)]


@pytest.mark.parametrize("url", ENTRY_POINTS)
def test_writes_to_a_second_database_are_not_rolled_back_with_the_operation(client, url):
    """Documented in docs/guarantees.md: one transaction covers the store's database only."""
    response = send(client, url, "second-database")

    assert response.status_code == 500
    assert not Widget.objects.exists()
    assert Charge.objects.filter(source="w").count() == 1  # the other system kept its write
    assert records() == []


# What runs outside the operation's transaction ------------------------------------------------


class _WhereItRan(logging.Handler):
    """Records, for each idempotency log record, whether a transaction was open as it ran."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.seen = []

    def emit(self, record):
        self.seen.append((record.getMessage(), connection.in_atomic_block))


@contextmanager
def where_it_ran():
    """Each signal and idempotency log line, with whether a transaction was open as it ran
    and the key's state then (read on the same connection: outside a transaction, what is
    committed)."""
    handler = _WhereItRan()
    logger = logging.getLogger("idempotency")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    sent = []

    def receiver(sender, signal, **kwargs):
        state = IdempotencyRecord.objects.filter(key=kwargs["key"]).values_list("state", flat=True)
        sent.append((outcome_of[signal], connection.in_atomic_block, list(state)))

    outcome_of = {signal: name for name, signal in signals.OUTCOMES.items()}
    for signal in outcome_of:
        signal.connect(receiver, weak=False)
    try:
        yield sent, handler.seen
    finally:
        for signal in outcome_of:
            signal.disconnect(receiver)
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.parametrize("url", ENTRY_POINTS)
def test_signals_and_log_lines_run_outside_the_operations_transaction(client, url):
    with where_it_ran() as (sent, logged):
        assert send(client, url).status_code == 201
        assert send(client, url)["Idempotent-Replayed"] == "true"

    # "completed" is sent once the outcome is committed, never while its row locks are held.
    assert sent == [
        ("reserved", False, ["in_progress"]),
        ("completed", False, ["completed"]),
        ("replayed", False, ["completed"]),
    ]
    assert [in_atomic_block for _, in_atomic_block in logged] == [False, False, False]


@pytest.mark.parametrize("url", ENTRY_POINTS)
def test_a_released_key_is_announced_after_the_rollback(client, url):
    with where_it_ran() as (sent, logged):
        assert send(client, url, "django-forbidden").status_code == 403

    assert sent == [("reserved", False, ["in_progress"]), ("released", False, [])]
    assert [in_atomic_block for _, in_atomic_block in logged] == [False, False]


@pytest.mark.parametrize("url", ENTRY_POINTS)
def test_an_aborted_transaction_is_logged_after_its_rollback(client, url):
    with where_it_ran() as (_, logged):
        response = send(client, url, "caught-integrity-error")

    assert problem_type(response) == "transaction-aborted"
    aborted = [entry for entry in logged if "without a savepoint" in entry[0]]
    # Logged once, by the transaction it aborted, after the rollback freed its locks.
    assert aborted == [(aborted[0][0], False)]


# Nested guards ---------------------------------------------------------------------------------


def hold_nested_key(name):
    """Another worker's reservation of the nested key, as run_once(fingerprint=None) makes it."""
    return RecordStore().reserve(
        scope="surface:nested",
        key=name,
        fingerprint=hash_document(canonical(None)),
        method="EVENT",
        path="other worker",
        lease=timedelta(minutes=5),
        expiry=timedelta(hours=1),
    )


@pytest.mark.parametrize("url", ENTRY_POINTS)
def test_a_nested_key_in_use_is_a_409_that_frees_the_outer_key(client, url):
    hold_nested_key("inner")

    response = send(client, url, "nested-in-use", name="inner")

    assert response.status_code == 409
    assert problem_type(response) == "request-in-progress"
    assert "Retry-After" in response
    assert not Widget.objects.exists()
    # Only the other worker's nested record: the outer key was released, never stored as 409.
    assert records() == [("in_progress", None)]

    IdempotencyRecord.objects.filter(scope="surface:nested").delete()
    retry = send(client, url, "nested-in-use", name="inner")
    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry


def test_run_once_nested_in_run_once_frees_both_keys_when_the_inner_one_is_in_use():
    from idempotency.exceptions import IdempotencyKeyInUse

    hold_nested_key("inner")

    def outer():
        Widget.objects.create(name="outer")
        return run_once(lambda: 1, scope="surface:nested", key="inner")

    with pytest.raises(IdempotencyKeyInUse):
        run_once(outer, scope="surface:outer", key="evt")
    assert not IdempotencyRecord.objects.filter(scope="surface:outer").exists()
    assert not Widget.objects.exists()


# Refusals raised or answered inside the operation ------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("throttled", 429),
        ("forbidden", 403),
        ("django-forbidden", 403),
        ("unauthenticated", 401),
        ("returned-429", 429),
    ],
)
def test_refusals_inside_the_operation_are_never_stored(client, kind, status):
    first = send(client, "/mixin", kind)

    assert first.status_code == status
    assert records() == []
    assert not Widget.objects.exists()
    if kind == "throttled":
        assert first["Retry-After"] == "7"
    # The key is free: the next attempt runs the operation again, never a frozen refusal.
    send(client, "/mixin", kind)
    assert Operation.calls == 2


@pytest.mark.parametrize("kind", ["django-forbidden", "returned-429"])
def test_refusals_inside_a_function_view_are_never_stored(client, kind):
    send(client, "/function", kind)
    send(client, "/function", kind)
    assert Operation.calls == 2
    assert records() == []


# Object permissions ----------------------------------------------------------------------------


def test_a_permission_refusal_from_get_object_reserves_nothing():
    owner, intruder = UserFactory(username="owner"), UserFactory(username="intruder")
    widget = Widget.objects.create(name="owner")
    api = APIClient()

    api.force_authenticate(intruder)
    refused = api.post(f"/owned/{widget.pk}/grow", headers={"Idempotency-Key": KEY})
    assert refused.status_code == 403
    assert records() == []

    # The same key, once access is granted, runs the operation (no frozen 403).
    widget.name = "intruder"
    widget.save()
    granted = api.post(f"/owned/{widget.pk}/grow", headers={"Idempotency-Key": KEY})
    assert granted.status_code == 200
    assert granted.json()["size"] == 2
    assert owner.pk != intruder.pk


def test_a_replay_rechecks_object_permissions_with_one_lookup():
    owner = UserFactory(username="owner")
    widget = Widget.objects.create(name="owner")
    api = APIClient()
    api.force_authenticate(owner)
    first = api.post(f"/owned/{widget.pk}/grow", headers={"Idempotency-Key": KEY})
    assert first.status_code == 200

    Operation.calls = 0
    replay = api.post(f"/owned/{widget.pk}/grow", headers={"Idempotency-Key": KEY})
    assert replay.status_code == 200
    assert replay["Idempotent-Replayed"] == "true"
    assert Operation.calls == 1  # get_object() once, for the permission check

    Widget.objects.filter(pk=widget.pk).update(name="someone else")  # access revoked
    revoked = api.post(f"/owned/{widget.pk}/grow", headers={"Idempotency-Key": KEY})
    assert revoked.status_code == 403
    assert "size" not in revoked.content.decode()


def test_a_delete_is_replayed_without_looking_its_object_up_again():
    widget = Widget.objects.create(name="w")
    api = APIClient()
    first = api.delete(f"/detail/{widget.pk}", headers={"Idempotency-Key": KEY})
    replay = api.delete(f"/detail/{widget.pk}", headers={"Idempotency-Key": KEY})
    assert (first.status_code, replay.status_code) == (204, 204)
    assert replay["Idempotent-Replayed"] == "true"


def test_put_is_protected_when_the_view_says_so():
    widget = Widget.objects.create(name="w")
    api = APIClient()
    body = {"name": "renamed", "size": 5}
    first = api.put(f"/detail/{widget.pk}", body, format="json", headers={"Idempotency-Key": KEY})
    Widget.objects.filter(pk=widget.pk).update(name="changed since")
    replay = api.put(f"/detail/{widget.pk}", body, format="json", headers={"Idempotency-Key": KEY})
    assert first.json() == replay.json() == {"id": widget.pk, "name": "renamed", "size": 5}
    assert replay["Idempotent-Replayed"] == "true"
    assert Widget.objects.get().name == "changed since"  # the replay wrote nothing


# Methods ---------------------------------------------------------------------------------------


def test_a_method_the_view_does_not_implement_is_405_with_allow_not_key_missing():
    response = APIClient().patch("/create-only", {"name": "x"}, format="json")
    assert response.status_code == 405
    assert "POST" in response["Allow"]
    assert records() == []


def test_options_and_head_run_unprotected(client):
    assert client.options("/mixin").status_code == 200
    assert client.head("/mixin").status_code == 405
    assert records() == []


# ATOMIC_REQUESTS -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/optional-mixin", "/optional-function"])
def test_a_keyless_request_where_the_key_is_optional_keeps_atomic_requests(
    client, url, atomic_requests
):
    response = client.post(url, "{}", content_type="application/json")
    assert response.json() == {"in_atomic_block": True}


@pytest.mark.parametrize("url", ["/optional-mixin", "/optional-function"])
def test_a_keyless_request_where_the_key_is_optional_runs_in_autocommit_without_it(client, url):
    response = client.post(url, "{}", content_type="application/json")
    assert response.json() == {"in_atomic_block": False}


@pytest.mark.parametrize("url", ENTRY_POINTS)
def test_under_atomic_requests_a_keyed_request_commits_its_reservation_on_its_own(
    client, url, atomic_requests
):
    first = send(client, url, "caught-integrity-error-savepoint")
    assert first.status_code == 409
    assert records() == [("completed", 409)]


# Replays: headers, content negotiation, bodies ----------------------------------------------------


def test_a_narrowed_header_list_still_replays_content_type(client):
    first = send(client, "/narrow-headers")
    replay = send(client, "/narrow-headers")
    assert replay["Content-Type"] == first["Content-Type"] == "application/json"


def test_a_replay_answers_the_stored_representation_whatever_the_accept_header():
    api = APIClient()
    first = api.post("/mixin", {"name": "w"}, format="json", headers={"Idempotency-Key": KEY})
    replay = api.post(
        "/mixin",
        {"name": "w"},
        format="json",
        headers={"Idempotency-Key": KEY, "Accept": "text/html"},
    )
    assert replay.status_code == 201
    assert replay.content == first.content
    assert replay["Content-Type"] == "application/json"


@pytest.mark.parametrize("url", ENTRY_POINTS)
@pytest.mark.parametrize("encoding", ["form", "multipart"])
def test_form_and_multipart_bodies_replay_and_refuse_another_body(client, url, encoding):
    def post(name):
        data = {"kind": "ok", "name": name}
        if encoding == "form":
            from urllib.parse import urlencode

            return client.post(
                url,
                urlencode(data),
                content_type="application/x-www-form-urlencoded",
                headers={"Idempotency-Key": KEY},
            )
        return client.post(url, data, headers={"Idempotency-Key": KEY})

    first = post("a")
    replay = post("a")
    other = post("b")

    assert first.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert other.status_code == 422
    assert Operation.calls == 1


@pytest.mark.parametrize("url", ENTRY_POINTS)
def test_a_mismatch_never_reveals_the_first_requests_query_string(client, url, caplog):
    send(client, f"{url}?token=secret-123", name="a")
    refused = send(client, f"{url}?token=secret-123", name="b")

    assert refused.status_code == 422
    assert "secret-123" not in refused.content.decode()
    assert "secret-123" not in caplog.text
    assert IdempotencyRecord.objects.get().path == url


@pytest.mark.parametrize("url", ENTRY_POINTS)
def test_keys_work_with_use_tz_off(client, url):
    with override_settings(USE_TZ=False):
        first = send(client, url)
        replay = send(client, url)
    assert first.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert Operation.calls == 1
