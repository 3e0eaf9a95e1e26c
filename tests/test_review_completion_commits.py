"""Hostile review of 6b16bfa/47e8e4b: the completion that commits in its own round trip.

Each test failed on that change and passes on its fix. The review's third finding (a lost lease
is now an ERROR whose statement PostgreSQL logs with its values) is documented, not changed:
docs/databases.md, "The completion commits the operation's transaction".
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.db import connection, transaction

from idempotency import signals
from idempotency.models import IdempotencyRecord
from idempotency.operations import run_once
from idempotency.store import RecordStore
from tests.testapp.models import Widget

pytestmark = pytest.mark.django_db(transaction=True)
postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the completion commits on PostgreSQL"
)
HOUR = timedelta(hours=1)


def _is_completion(sql: str) -> bool:
    return "UPDATE" in sql and "idempotency_idempotencyrecord" in sql and "completed_at" in sql


def raise_after_completion(error: type[BaseException]):
    """An execute wrapper that raises ``error`` once the completion's statement returned."""

    def wrapper(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if _is_completion(sql):
            raise error()
        return result

    return wrapper


# 1. Anything raised after the completion statement returns now leaves a committed outcome that
#    Django (and the library) treat as rolled back ---------------------------------------------


class SoftTimeLimitExceeded(Exception):
    """What Celery raises asynchronously in a task past its soft time limit (or a query guard
    of an ``execute_wrapper``, a KeyboardInterrupt): anything raised once the statement ran."""


@postgres_only
def test_an_error_raised_once_the_completion_returned_never_drops_a_committed_outcomes_effects(
    caplog,
):
    """The statement committed the writes and the outcome, then something raised: the outcome
    stands, so the block ends as a commit does (the operation's callbacks run, ``completed`` is
    announced once), the error is logged, and the caller gets the stored result."""
    on_commit_ran: list[str] = []
    announced: list[int] = []

    def receiver(sender, status, **kwargs):
        announced.append(status)

    def operation():
        Widget.objects.create(name="paid", size=1)
        transaction.on_commit(lambda: on_commit_ran.append("send the receipt"))
        return "ok"

    signals.completed.connect(receiver)
    try:
        with (
            caplog.at_level(logging.ERROR, logger="idempotency"),
            connection.execute_wrapper(raise_after_completion(SoftTimeLimitExceeded)),
        ):
            result = run_once(operation, scope="s", key="k")
    finally:
        signals.completed.disconnect(receiver)

    assert result == "ok"
    assert IdempotencyRecord.objects.filter(key="k", state="completed").exists()
    assert Widget.objects.filter(name="paid").exists()
    assert (on_commit_ran, announced) == (["send the receipt"], [200])
    assert any("raised after the outcome was stored" in r.getMessage() for r in caplog.records)
    assert connection.get_autocommit() and not connection.in_atomic_block


@postgres_only
def test_an_interrupt_once_the_completion_returned_stays_an_interrupt_and_keeps_the_outcome():
    on_commit_ran: list[str] = []

    def operation():
        transaction.on_commit(lambda: on_commit_ran.append("callback"))
        return Widget.objects.create(name="paid", size=1).pk

    with (
        connection.execute_wrapper(raise_after_completion(KeyboardInterrupt)),
        pytest.raises(KeyboardInterrupt),
    ):
        run_once(operation, scope="s", key="k")
    assert on_commit_ran == ["callback"]
    widget_id = Widget.objects.get().pk
    assert run_once(lambda: "never", scope="s", key="k") == widget_id  # replayed, not rerun


def test_an_error_before_the_completion_is_sent_stores_nothing():
    """A wrapper that refuses the statement before it reaches the database: nothing committed,
    even where the operation ran no SQL (the connection is then idle, as after a commit)."""

    def refuse(execute, sql, params, many, context):
        if _is_completion(sql):
            raise SoftTimeLimitExceeded()
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse), pytest.raises(SoftTimeLimitExceeded):
        run_once(lambda: "no SQL", scope="s", key="k")
    assert not IdempotencyRecord.objects.exists()  # released: a retry runs it
    assert run_once(lambda: "retried", scope="s", key="k") == "retried"


# 2. A RecordStore subclass written against the documented complete(reservation, response) ----


class MeteredStore(RecordStore):
    """A store that counts completions, overriding the documented public signature."""

    completions = 0

    def complete(self, reservation, response):  # docs/api.md before this change
        MeteredStore.completions += 1
        return super().complete(reservation, response)


def test_a_store_subclass_with_the_documented_complete_signature_still_completes():
    result = run_once(lambda: 7, scope="s", key="metered", store=MeteredStore())
    assert result == 7
    assert MeteredStore.completions == 1
