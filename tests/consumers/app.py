"""The Celery app of the consumer tests: the workers import it, and so does the test publishing.

Configured from the environment so a worker subprocess and the test agree: the broker, a queue
named for this test run (stale messages of another run never reach it), and a log file where each
task body notes every time it starts (outside the database, so rolled-back runs count too).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import django
from django.apps import apps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
if not apps.ready:
    django.setup()

from celery import Celery  # noqa: E402
from kombu import Queue  # noqa: E402

from idempotency.contrib.celery import IdempotentTask  # noqa: E402
from idempotency.store import RecordStore, Reserved  # noqa: E402
from tests.testapp.models import Widget  # noqa: E402

BROKER_URL = os.environ.get("IDEMPOTENCY_TEST_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
# Short, so a killed worker's key is taken over within the test; longer than any task here runs.
LEASE = timedelta(seconds=3)

app = Celery("tests.consumers")


def configure(queue: str) -> None:
    """Consume and publish on ``queue``; rejected messages go to ``<queue>.rejected``."""
    app.conf.update(
        broker_url=BROKER_URL,
        broker_connection_retry_on_startup=True,
        result_backend="rpc://",
        task_default_queue=queue,
        task_queues=[
            Queue(
                queue,
                routing_key=queue,
                queue_arguments={
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": f"{queue}.rejected",
                },
            ),
            Queue(f"{queue}.rejected", routing_key=f"{queue}.rejected"),
        ],
        # At-least-once: a message is acknowledged after its task ran, and put back when the
        # worker process running it dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
    )


configure(os.environ.get("IDEMPOTENCY_TEST_QUEUE", "idempotency-tests"))


def note(task: str, event_id: str, hostname: str = "") -> None:
    """Append one line per run of a task body: proof of how many times it really ran."""
    path = os.environ.get("IDEMPOTENCY_TEST_LOG")
    if path:
        with Path(path).open("a") as log:
            log.write(f"{task} {event_id} {hostname} {os.getpid()}\n")


@app.task(base=IdempotentTask, idempotency_key="event_id", idempotency_lease=LEASE)
def record(event_id: str, amount: int) -> dict[str, object]:
    """One effect per event; it takes a moment, so duplicates arrive while it runs."""
    note("record", event_id)
    widget = Widget.objects.create(name=f"record:{event_id}", size=amount)
    time.sleep(0.3)
    return {"event": event_id, "widget": widget.pk}


@app.task(bind=True, base=IdempotentTask, idempotency_key="event_id", idempotency_lease=LEASE)
def slow(self: IdempotentTask, event_id: str, seconds: float) -> dict[str, object]:
    """Long enough for the test to kill the worker running it."""
    note("slow", event_id, self.request.hostname)
    widget = Widget.objects.create(name=f"slow:{event_id}")
    time.sleep(seconds)
    return {"event": event_id, "widget": widget.pk}


class SlowReleaseStore(RecordStore):
    """Frees a key a second late: a retry published before the release would find it held."""

    def release(self, reservation: Reserved) -> bool:
        time.sleep(1)
        return super().release(reservation)


@app.task(
    bind=True,
    base=IdempotentTask,
    idempotency_key="event_id",
    idempotency_lease=LEASE,
    idempotency_store=SlowReleaseStore(),
    autoretry_for=(RuntimeError,),
    max_retries=1,
    default_retry_delay=0,
)
def flaky(self: IdempotentTask, event_id: str) -> dict[str, object]:
    """Writes, then fails on its first delivery: Celery's retry runs it once more."""
    note("flaky", event_id)
    widget = Widget.objects.create(name=f"flaky:{event_id}")
    if self.request.retries == 0:
        raise RuntimeError("the first delivery fails after writing")
    return {"event": event_id, "widget": widget.pk}
