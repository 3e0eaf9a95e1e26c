"""idempotent_task under django.tasks (Django 6.0+), with the ImmediateBackend: each enqueue runs
the task at once, in the calling thread."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

pytest.importorskip("django.tasks", reason="django.tasks needs Django 6.0 or later")

from django.tasks import TaskResultStatus, task  # noqa: E402

from idempotency.contrib.tasks import idempotent_task  # noqa: E402
from idempotency.models import IdempotencyRecord  # noqa: E402
from idempotency.operations import idempotent_operation  # noqa: E402
from tests.test_concurrency import race  # noqa: E402
from tests.testapp.models import Widget  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)


@task
@idempotent_task(key="event_id")
def charge(event_id, amount, sleep=0.0):
    widget = Widget.objects.create(name=f"charge:{event_id}", size=amount)
    time.sleep(sleep)
    return {"event": event_id, "widget": widget.pk}


@task
@idempotent_task(key="event_id")
def failing(event_id):
    Widget.objects.create(name=f"failing:{event_id}")
    raise RuntimeError("the task failed after writing")


@task(takes_context=True)
@idempotent_task(key="event_id")
def with_context(context, event_id):
    Widget.objects.create(name=f"context:{event_id}")
    return context.attempt


@task
@idempotent_task
def keyed_by_arguments(a, b):
    Widget.objects.create(name="arguments")
    return a + b


def error_class(result):
    [error] = result.errors
    return error.exception_class_path


def test_a_repeat_returns_the_stored_result_without_running():
    first = charge.enqueue("evt_1", 100)
    repeat = charge.enqueue(event_id="evt_1", amount=100)  # by keyword: the same call

    assert first.status == repeat.status == TaskResultStatus.SUCCESSFUL
    assert (
        first.return_value
        == repeat.return_value
        == {
            "event": "evt_1",
            "widget": Widget.objects.get().pk,
        }
    )
    record = IdempotencyRecord.objects.get()
    assert (record.scope, record.key, record.state) == (
        "tasks:tests.consumers.test_django_tasks.charge",
        "evt_1",
        "completed",
    )


def test_without_a_key_all_the_arguments_are_the_key():
    assert keyed_by_arguments.enqueue(1, 2).return_value == 3
    assert keyed_by_arguments.enqueue(1, b=2).return_value == 3
    assert keyed_by_arguments.enqueue(2, 1).return_value == 3
    assert Widget.objects.count() == 2


def test_another_payload_for_the_event_id_fails_as_reused():
    charge.enqueue("evt_1", 100)

    result = charge.enqueue("evt_1", 999)

    assert result.status == TaskResultStatus.FAILED
    assert error_class(result) == "idempotency.exceptions.IdempotencyKeyReused"
    assert Widget.objects.count() == 1


def test_a_task_that_raises_rolls_back_and_frees_its_key():
    result = failing.enqueue("evt_1")

    assert result.status == TaskResultStatus.FAILED
    assert error_class(result) == "builtins.RuntimeError"
    assert not Widget.objects.exists()
    assert not IdempotencyRecord.objects.exists()  # a retry finds the key free


def test_a_held_key_fails_as_in_progress():
    with idempotent_operation(
        scope="tasks:tests.consumers.test_django_tasks.charge",
        key="evt_1",
        fingerprint={"event_id": "evt_1", "amount": 100, "sleep": 0.0},
        lease=timedelta(seconds=30),
    ) as holder:
        result = charge.enqueue("evt_1", 100)
        holder.result = "done"

    assert result.status == TaskResultStatus.FAILED
    assert error_class(result) == "idempotency.exceptions.IdempotencyKeyInUse"
    assert charge.enqueue("evt_1", 100).return_value == "done"


def test_the_task_context_is_not_part_of_the_key_or_fingerprint():
    first = with_context.enqueue("evt_1")
    repeat = with_context.enqueue("evt_1")  # another TaskContext, the same call

    assert first.status == repeat.status == TaskResultStatus.SUCCESSFUL
    assert first.return_value == repeat.return_value == 1
    assert Widget.objects.count() == 1


def test_async_task_functions_are_refused():
    async def handler(event_id):
        return event_id

    with pytest.raises(TypeError, match="does not support async tasks"):
        idempotent_task(handler)


@pytest.mark.postgres
def test_one_event_enqueued_by_many_threads_at_once_runs_once():
    results = race(12, lambda i: charge.enqueue("evt_race", 100, sleep=0.5))

    assert Widget.objects.count() == 1
    done = [r for r in results if r.status == TaskResultStatus.SUCCESSFUL]
    busy = [r for r in results if r.status == TaskResultStatus.FAILED]
    assert len(done) + len(busy) == 12
    assert done and all(r.return_value == done[0].return_value for r in done)
    assert all(error_class(r) == "idempotency.exceptions.IdempotencyKeyInUse" for r in busy)
