"""IdempotentTask in one process (``task.apply()``, Celery's eager mode): the key, the stored
result, the scope and the refusals, on SQLite and PostgreSQL. tests/consumers/test_celery_workers.py
proves the same under real workers and a real broker."""

from __future__ import annotations

from datetime import timedelta

import pytest

pytest.importorskip("celery", reason="needs Celery: pip install -e '.[celery]'")

from celery.exceptions import Reject, Retry  # noqa: E402

from idempotency.contrib.celery import IdempotentTask  # noqa: E402
from idempotency.exceptions import IdempotencyKeyInUse  # noqa: E402
from idempotency.models import IdempotencyRecord  # noqa: E402
from idempotency.operations import idempotent_operation  # noqa: E402
from tests.consumers.app import app, record  # noqa: E402
from tests.testapp.models import Widget  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_repeat_returns_the_stored_result_without_running():
    first = record.apply(("evt_1", 100)).get()
    # The same call, the key passed by keyword: the same key and the same fingerprint.
    repeat = record.apply(kwargs={"event_id": "evt_1", "amount": 100}).get()

    assert first == repeat == {"event": "evt_1", "widget": Widget.objects.get().pk}
    record_ = IdempotencyRecord.objects.get()
    assert (record_.scope, record_.key, record_.path) == (
        "celery:tests.consumers.app.record",
        "evt_1",
        "tests.consumers.app.record",
    )


def test_another_payload_for_the_event_id_is_rejected_without_requeue():
    record.apply(("evt_1", 100)).get()

    result = record.apply(("evt_1", 999))

    assert result.state == "REJECTED"
    assert isinstance(result.result, Reject)
    assert result.result.requeue is False
    assert "already processed" in str(result.result.reason)
    assert Widget.objects.count() == 1


def test_an_invalid_key_is_rejected_without_requeue():
    result = record.apply(("evt 1, evt 2", 100))

    assert result.state == "REJECTED"
    assert result.result.requeue is False
    assert "visible ASCII" in str(result.result.reason)
    assert not Widget.objects.exists()


def test_a_held_key_becomes_a_retry_with_the_rest_of_the_lease_as_countdown():
    with idempotent_operation(
        scope="celery:tests.consumers.app.record",
        key="evt_1",
        fingerprint={"event_id": "evt_1", "amount": 100},  # the task's arguments by name
        lease=timedelta(seconds=30),
    ) as holder:
        assert holder.should_run
        # As a worker runs it (is_eager only keeps retry() from publishing).
        record.push_request(id="task-1", retries=0, is_eager=True, called_directly=False)
        try:
            with pytest.raises(Retry) as excinfo:
                record("evt_1", 100)
        finally:
            record.pop_request()
        holder.result = "done"

    assert isinstance(excinfo.value.exc, IdempotencyKeyInUse)
    assert excinfo.value.when == 30
    assert not Widget.objects.exists()


def test_without_idempotency_key_all_the_arguments_are_the_key():
    assert totals.apply((1, 2)).get() == 3
    assert totals.apply(kwargs={"a": 1, "b": 2}).get() == 3  # the same call
    assert totals.apply((2, 1)).get() == 3  # another call
    assert Widget.objects.count() == 2
    assert IdempotencyRecord.objects.count() == 2


def test_a_callable_names_the_key_and_another_callable_the_fingerprint():
    assert from_event.apply(({"id": "evt_1", "amount": 5, "sent_at": "10:00"},)).get() == 5
    # A redelivery stamped at another time is the same event: the fingerprint ignores sent_at.
    assert from_event.apply(({"id": "evt_1", "amount": 5, "sent_at": "10:01"},)).get() == 5
    assert Widget.objects.count() == 1
    assert IdempotencyRecord.objects.get().key == "evt_1"


def test_a_key_argument_the_task_lacks_is_a_type_error():
    with pytest.raises(TypeError, match="names 'event_id', an argument it lacks"):
        misnamed.apply((1,), throw=True)


def test_the_lease_outlasts_the_hard_time_limit():
    assert record.get_idempotency_lease() == timedelta(seconds=3)  # given
    assert totals.get_idempotency_lease() is None  # the LEASE setting
    assert limited.get_idempotency_lease() == timedelta(seconds=600)


@app.task(base=IdempotentTask)
def totals(a, b):
    Widget.objects.create(name="totals")
    return a + b


@app.task(
    base=IdempotentTask,
    idempotency_key=lambda event: event["id"],
    idempotency_fingerprint=lambda event: {"amount": event["amount"]},
)
def from_event(event):
    Widget.objects.create(name="event")
    return event["amount"]


@app.task(base=IdempotentTask, idempotency_key="event_id")
def misnamed(number):
    return number


@app.task(base=IdempotentTask, time_limit=600)
def limited():
    return None
