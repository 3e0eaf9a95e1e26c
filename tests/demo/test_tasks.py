"""orders.tasks.send_order_confirmation: one email per order, however often it is delivered.

Eagerly (the demo's default, no broker), and with real Celery workers on RabbitMQ against a
PostgreSQL database they share with the test (marker ``broker``; the helpers are
tests/consumers/conftest.py's).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid

import pytest
from celery import Celery
from django.core import mail

from idempotency.models import IdempotencyRecord
from orders.models import Order
from orders.tasks import send_order_confirmation
from tests.consumers.conftest import (
    ROOT,
    ConsumerDatabase,
    Worker,
    unavailable,
    worker_environment,
)
from tests.demo.conftest import DATABASES, api_for, post
from tests.demo.factories import ProductFactory, UserFactory
from tests.demo.test_orders import BrokenMailServer

SCOPE = "celery:orders.tasks.send_order_confirmation"


def place_order(user):
    ProductFactory(sku="mug", name="Mug", stock=10)
    body = {"userId": user.username, "sku": "mug", "quantity": 1}
    response = post(api_for(user), "/orders", body)
    assert response.status_code == 201
    return response.json()["orderId"]


@pytest.mark.django_db(transaction=True, databases=DATABASES)
class TestEagerly:
    """CELERY_BROKER_URL unset: the task runs in the process that sends it, through the guard."""

    def test_the_confirmation_delivered_again_and_again_sends_one_email(self):
        order_id = place_order(UserFactory(username="ada"))
        assert len(mail.outbox) == 1  # the order's own, sent when it committed

        results = [send_order_confirmation.apply((order_id,)).get() for _ in range(3)]
        results += [send_order_confirmation.delay(order_id).get() for _ in range(2)]

        [email] = mail.outbox
        assert email.to == ["ada@example.com"] and order_id in email.subject
        # Every delivery answers the first one's stored result.
        assert results == [{"orderId": order_id, "emailedTo": "ada@example.com"}] * 5
        record = IdempotencyRecord.objects.get(scope=SCOPE, key=order_id)
        assert record.state == IdempotencyRecord.State.COMPLETED

    def test_without_the_guard_each_delivery_emails_again(self):
        # The task's body alone (what a Celery task without IdempotentTask runs per delivery):
        # the guard, not the body, is what keeps it to one email.
        order_id = place_order(UserFactory(username="ada"))

        send_order_confirmation.run(order_id)
        send_order_confirmation.run(order_id)

        assert len(mail.outbox) == 3

    def test_a_mail_server_down_frees_the_key_for_the_next_delivery(self, settings, caplog):
        settings.EMAIL_BACKEND = f"{BrokenMailServer.__module__}.BrokenMailServer"
        order_id = place_order(UserFactory(username="ada"))  # the order stands regardless
        assert "ConnectionRefusedError" in caplog.text  # its on-commit hook logged the failure
        assert not IdempotencyRecord.objects.filter(scope=SCOPE, key=order_id).exists()

        settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
        send_order_confirmation.delay(order_id)
        send_order_confirmation.delay(order_id)

        assert len(mail.outbox) == 1
        assert Order.objects.filter(order_id=order_id).exists()

    def test_a_user_without_an_email_gets_none_and_the_result_is_stored(self):
        order_id = place_order(UserFactory(username="quiet", email=""))

        assert send_order_confirmation.delay(order_id).get() == {
            "orderId": order_id,
            "emailedTo": None,
        }
        assert mail.outbox == []
        assert IdempotencyRecord.objects.get(scope=SCOPE, key=order_id).state == "completed"

    def test_the_task_stays_on_the_demos_app_when_another_app_is_current(self):
        # A Celery app created later becomes this thread's current app: a @shared_task would
        # follow it (here, to an in-memory broker, and no email). The demo binds its task.
        from celery import current_app

        previous = current_app._get_current_object()
        intruder = Celery("intruder", broker="memory://", set_as_current=True)
        try:
            assert current_app._get_current_object() is intruder
            place_order(UserFactory(username="ada"))
        finally:
            previous.set_current()
            intruder.close()

        assert len(mail.outbox) == 1


# Real workers on RabbitMQ -----------------------------------------------------------------------

PUBLISHER = """
import sys

import django

django.setup()
from django.contrib.auth import get_user_model
from django.db import transaction

from orders.models import Product
from orders.services import place_order
from orders.tasks import send_order_confirmation

user = get_user_model().objects.create(username="buyer", email="buyer@example.com")
product = Product.objects.create(sku="mug", name="Mug", stock=10)
with transaction.atomic():
    # Publishes the confirmation when the order commits, as the view does.
    order = place_order(user=user, product=product, quantity=1)
for _ in range(int(sys.argv[1])):
    # The same message again: a publisher that retried, a broker that redelivered.
    send_order_confirmation.delay(order.order_id)
print(order.order_id)
"""


class DemoWorker(Worker):
    """``celery -A demo_api worker`` on the demo's settings, consuming the test's queue."""

    def __init__(self, env, log, concurrency=2):
        self.queue = env["DEMO_TEST_QUEUE"]
        self.hostname = f"demo{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        self.output = log.with_name(f"{self.hostname.split('@')[0]}.log")
        self.env = env
        self.concurrency = concurrency
        self.process = None

    def _popen(self, output):
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "demo_api",
                "worker",
                "--pool=prefork",
                f"--concurrency={self.concurrency}",
                f"--hostname={self.hostname}",
                f"--queues={self.queue}",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture(scope="module")
def demo_database():
    from django.db import connections

    if connections["default"].vendor != "postgresql":
        pytest.skip("needs PostgreSQL: the workers and the test share a committed database")
    from tests.consumers.app import BROKER_URL

    try:
        from kombu import Connection

        with Connection(BROKER_URL, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:
        unavailable(f"needs a broker at {BROKER_URL}: {exc!r}")

    database = ConsumerDatabase(os.environ["DATABASE_URL"], suffix="demotasks")
    database.create()
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture
def demo_env(demo_database, tmp_path):
    """The environment of the demo's processes: its settings, a fresh queue, a mail folder."""
    from kombu import Connection

    from tests.consumers.app import BROKER_URL

    queue = f"idempotency-demo-tests-{uuid.uuid4().hex[:12]}"
    env = worker_environment(
        demo_database,
        CELERY_BROKER_URL=BROKER_URL,
        DEMO_TEST_QUEUE=queue,
        DEMO_TEST_MAILDIR=str(tmp_path / "mail"),
        # Short: a duplicate that finds the key held waits for the rest of this lease.
        IDEMPOTENCY_LEASE_SECONDS="3",
    )
    env["DJANGO_SETTINGS_MODULE"] = "tests.demo.worker_settings"
    try:
        yield env
    finally:
        with Connection(BROKER_URL) as connection:
            connection.default_channel.queue_delete(queue)


def sent_emails(maildir, order_id):
    files = list(maildir.glob("*.log")) if maildir.exists() else []
    subject = f"Subject: Order {order_id} confirmed"
    return sum(path.read_text().splitlines().count(subject) for path in files)


@pytest.mark.broker
@pytest.mark.postgres
def test_one_confirmation_published_eight_times_to_real_workers_sends_one_email(
    demo_env, demo_database, tmp_path
):
    workers = [DemoWorker(demo_env, tmp_path / "runs.log").start() for _ in range(2)]
    try:
        for worker in workers:
            worker.wait_ready()
        published = subprocess.run(
            [sys.executable, "-c", PUBLISHER, "7"],
            cwd=ROOT,
            env=demo_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        order_id = published.stdout.split()[-1]

        # Eight messages (the order's own and 7 more), each run by a worker to success.
        finished = re.compile(r"Task orders\.tasks\.send_order_confirmation\[([\w-]+)\] succeeded")
        deadline = time.monotonic() + 60
        while len(set(finished.findall(logs := "".join(w.logs() for w in workers)))) < 8:
            assert time.monotonic() < deadline, logs
            time.sleep(0.1)
    finally:
        for worker in workers:
            worker.stop()

    assert sent_emails(tmp_path / "mail", order_id) == 1
    state, body = demo_database.record(SCOPE, order_id)
    assert state == "completed"
    assert json.loads(bytes(body)) == {"orderId": order_id, "emailedTo": "buyer@example.com"}
    assert "raised unexpected" not in logs
