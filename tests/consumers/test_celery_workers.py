"""IdempotentTask under at-least-once delivery: real workers (prefork, 2 processes each) on
RabbitMQ, acks_late and task_reject_on_worker_lost, a shared PostgreSQL database."""

from __future__ import annotations

import json
import time
import uuid

import pytest

pytestmark = [pytest.mark.broker, pytest.mark.postgres]


def event_id():
    return f"evt_{uuid.uuid4().hex[:12]}"


def wait_until(condition, timeout=30.0, step=0.05):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(step)
    return found


def test_one_event_published_50_times_has_one_effect(start_workers, consumer_database, runs):
    from tests.consumers.app import record

    workers = start_workers(2)
    event = event_id()
    results = [record.apply_async((event, 100)) for _ in range(50)]

    answers = [result.get(timeout=90) for result in results]

    # Every delivery answers the stored result of the one run.
    assert len(runs("record", event)) == 1
    assert consumer_database.widgets(f"record:{event}") == 1
    state, body = consumer_database.record("celery:tests.consumers.app.record", event)
    assert state == "completed"
    assert answers == [json.loads(bytes(body))] * 50
    # Duplicates that came while the first delivery ran were retried, not failed.
    logs = "".join(worker.logs() for worker in workers)
    assert "IdempotencyKeyInUse" in logs
    assert "raised unexpected" not in logs


@pytest.mark.parametrize("victim", ["worker", "pool process"])
def test_a_delivery_killed_mid_task_is_redelivered_and_runs_once(
    victim, start_workers, consumer_database, runs
):
    from tests.consumers.app import LEASE, slow

    workers = start_workers(2)
    event = event_id()
    result = slow.apply_async((event, 2.0))

    [(_, _, hostname, pid)] = wait_until(lambda: runs("slow", event))
    [running] = [worker for worker in workers if worker.hostname == hostname]
    if victim == "worker":
        # The whole worker dies: its broker connection drops and RabbitMQ redelivers the
        # unacknowledged message to the other worker.
        running.kill()
    else:
        # Only the pool process dies: with task_reject_on_worker_lost the worker puts the
        # message back instead of acknowledging it as failed.
        import os
        import signal

        os.kill(int(pid), signal.SIGKILL)

    answer = result.get(timeout=60)

    first, second = runs("slow", event)
    assert first[3] == pid and second[3] != pid
    if victim == "worker":
        assert second[2] != hostname  # another worker took it
    # The killed run's writes rolled back with its transaction; its key was not stranded:
    # the redelivery waited for the lease and took the key over.
    assert consumer_database.widgets(f"slow:{event}") == 1
    state, body = consumer_database.record("celery:tests.consumers.app.slow", event)
    assert (state, json.loads(bytes(body))) == ("completed", answer)
    assert LEASE.total_seconds() < 5  # keeps this test short


def test_a_task_that_raises_frees_its_key_and_celery_retries_it_once(
    start_workers, consumer_database, runs
):
    from tests.consumers.app import flaky

    workers = start_workers(2)
    event = event_id()

    answer = flaky.apply_async((event,)).get(timeout=60)

    # Two runs: the first wrote, raised and rolled back; the retry (max_retries=1, no countdown)
    # was published only once the key was free (a second after the failure: SlowReleaseStore),
    # so it never found the key held; its write is the one effect.
    assert len(runs("flaky", event)) == 2
    assert consumer_database.widgets(f"flaky:{event}") == 1
    state, body = consumer_database.record("celery:tests.consumers.app.flaky", event)
    assert (state, json.loads(bytes(body))) == ("completed", answer)
    assert "IdempotencyKeyInUse" not in "".join(worker.logs() for worker in workers)


def test_the_event_id_with_another_payload_is_rejected_not_retried(
    start_workers, consumer_database, queue, runs
):
    from tests.consumers.app import app, record

    start_workers(1)
    event = event_id()
    record.apply_async((event, 100)).get(timeout=60)

    record.apply_async((event, 999))

    def rejected():
        with app.connection_for_write() as connection:
            declared = connection.default_channel.queue_declare(f"{queue}.rejected", passive=True)
            return declared.message_count

    # Dead-lettered by the broker: the message is not redelivered, the task not retried.
    assert wait_until(rejected) == 1
    assert len(runs("record", event)) == 1
    assert consumer_database.widgets(f"record:{event}") == 1
