"""Signals and log lines for each outcome of a key, sent from the DRF mixin."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import timedelta

import pytest

from idempotency import signals
from idempotency.models import IdempotencyRecord
from tests.test_mixin_contract import KEY, URL, hold_key, post
from tests.testapp.views import WidgetView

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def captured(*names):
    """Record ``(outcome, sender, kwargs)`` for each named signal sent inside the block."""
    seen = []
    receivers = []
    for name in names:

        def receiver(sender, signal, _name=name, **kwargs):
            seen.append((_name, sender, kwargs))

        receivers.append((getattr(signals, name), receiver))
        getattr(signals, name).connect(receiver, weak=False)
    try:
        yield seen
    finally:
        for signal, receiver in receivers:
            signal.disconnect(receiver)


ALL = tuple(signals.OUTCOMES)


def outcomes(seen):
    return [name for name, _, _ in seen]


def idempotency_records(caplog):
    return [r for r in caplog.records if r.name == "idempotency"]


def test_a_new_key_is_reserved_then_completed(api):
    with captured(*ALL) as seen:
        post(api)
    assert outcomes(seen) == ["reserved", "completed"]
    (_, sender, reserved), (_, _, completed) = seen
    assert sender is WidgetView
    assert reserved["scope"] == "anonymous"
    assert reserved["key"] == KEY
    assert reserved["taken_over"] is False
    assert reserved["request"].path == URL
    assert completed["status"] == 201


def test_a_retry_is_replayed(api):
    post(api)
    with captured(*ALL) as seen:
        post(api)
    assert outcomes(seen) == ["replayed"]
    assert seen[0][2]["status"] == 201


def test_a_key_in_use_is_a_conflict(api, clocked_store, clock):
    hold_key(api, clocked_store, lease_seconds=30)
    with captured(*ALL) as seen:
        post(api)
    assert outcomes(seen) == ["conflict"]
    assert seen[0][2]["retry_after"] == timedelta(seconds=30)


def test_an_expired_lease_is_taken_over(api, clocked_store, clock):
    hold_key(api, clocked_store, lease_seconds=30)
    clock.advance(seconds=31)
    with captured("reserved") as seen:
        post(api)
    assert seen[0][2]["taken_over"] is True


def test_another_payload_is_a_mismatch(api):
    post(api, {"name": "a"})
    with captured(*ALL) as seen:
        post(api, {"name": "b"})
    assert outcomes(seen) == ["mismatch"]
    assert (seen[0][2]["method"], seen[0][2]["path"]) == ("POST", URL)


def test_a_failed_operation_releases_the_key(api):
    with captured(*ALL) as seen:
        post(api, {"name": "a", "behaviour": "503"})
    assert outcomes(seen) == ["reserved", "released"]


def test_a_validation_error_releases_the_key(api):
    with captured(*ALL) as seen:
        post(api, {"name": ""})
    assert outcomes(seen) == ["reserved", "released"]


def test_a_stored_4xx_raised_by_the_operation_is_completed(api):
    with captured("completed") as seen:
        post(api, {"name": "a", "behaviour": "not-found"})
    assert seen[0][2]["status"] == 404


def test_no_signal_for_unprotected_requests(api):
    with captured(*ALL) as seen:
        api.put(URL, {"name": "a"}, format="json", headers={"Idempotency-Key": KEY})
        post(api, key=None, url="/test/optional-widgets/")
    assert seen == []


def test_a_failing_receiver_is_logged_and_changes_nothing(api, caplog):
    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    signals.reserved.connect(broken)
    try:
        response = post(api)
    finally:
        signals.reserved.disconnect(broken)
    assert response.status_code == 201
    assert IdempotencyRecord.objects.get().state == "completed"
    errors = [r for r in idempotency_records(caplog) if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info[1].args == ("receiver bug",)


def test_each_outcome_is_logged_with_scope_key_and_outcome(api, caplog):
    caplog.set_level(logging.INFO, logger="idempotency")
    post(api, {"name": "secret-body-value"})
    post(api, {"name": "secret-body-value"})
    post(api, {"name": "other"})

    records = idempotency_records(caplog)
    assert [r.idempotency_outcome for r in records] == [
        "reserved",
        "completed",
        "replayed",
        "mismatch",
    ]
    assert {r.idempotency_scope for r in records} == {"anonymous"}
    assert {r.idempotency_key for r in records} == {KEY}
    assert records[1].idempotency_status == 201
    assert records[3].levelno == logging.WARNING
    # The stored body never reaches the log, neither in the message nor in extra.
    for record in records:
        assert "secret-body-value" not in record.getMessage()
        assert "secret-body-value" not in repr(vars(record))


def test_conflict_log_carries_retry_after_in_seconds(api, clocked_store, caplog):
    hold_key(api, clocked_store, lease_seconds=30)
    caplog.set_level(logging.INFO, logger="idempotency")
    post(api)
    (record,) = idempotency_records(caplog)
    assert record.idempotency_outcome == "conflict"
    assert record.idempotency_retry_after == 30.0
