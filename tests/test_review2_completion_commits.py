"""Hostile review of 8dc8113: an error raised after the committing completion.

Each test failed on 8dc8113 because of the defect its docstring names, and passes on its fix:
the store tells a statement that returned by an execute wrapper of its own, the innermost, not
by asking the database afterwards.
"""

from __future__ import annotations

import logging

import pytest
from django.db import connection, transaction

from idempotency import signals
from idempotency.models import IdempotencyRecord
from idempotency.operations import run_once
from idempotency.store import RecordStore, StoredResponse
from tests.test_new_key_path import reserved_attempt
from tests.test_review_completion_commits import raise_after_completion
from tests.testapp.models import Widget

pytestmark = pytest.mark.django_db(transaction=True)
postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the completion commits on PostgreSQL"
)


def _is_committing_completion(sql: str) -> bool:
    return "idempotency_idempotencyrecord" in sql and sql.rstrip().endswith("COMMIT")


class Deadline(Exception):
    """What a query guard raises once a request's time budget is spent."""


class _Announced:
    def __init__(self) -> None:
        self.statuses: list[int] = []

    def __call__(self, sender, status, **kwargs) -> None:
        self.statuses.append(status)


@pytest.fixture
def announced():
    receiver = _Announced()
    signals.completed.connect(receiver)
    yield receiver.statuses
    signals.completed.disconnect(receiver)


# 1. An interrupt after the commit is swallowed when an on_commit callback raises ------------


@postgres_only
def test_an_interrupt_after_the_commit_stays_an_interrupt_when_an_on_commit_callback_raises():
    """docs/databases.md: "the error is logged (an interrupt is raised again)". Transaction.
    __exit__ returns from the on_commit-callback branch before it reaches ``raise
    raised_after_commit``: the KeyboardInterrupt (SystemExit from a worker's shutdown) is lost
    and run_once returns as if nothing had happened."""

    def failing_callback():
        raise RuntimeError("receipt mailer down")

    def operation():
        Widget.objects.create(name="paid", size=1)
        transaction.on_commit(failing_callback)
        return "ok"

    with (
        connection.execute_wrapper(raise_after_completion(KeyboardInterrupt)),
        pytest.raises(KeyboardInterrupt),
    ):
        run_once(operation, scope="s", key="k")


# 2. The check reads "completed with this token", not "this statement committed" ------------


@postgres_only
def test_a_second_completion_refused_before_it_ran_is_not_taken_for_a_commit(announced):
    """RecordStore.complete: "a completed outcome is final, also for a second call with the
    same reservation". A second completion that never reached the database (a guard refused
    its statement; the block ran no SQL, so the connection is idle) finds the row completed
    with its token by the first one: _committed() answers True, the guard's error is
    swallowed, the block reports ``completed``, and ``completed`` is announced a second time,
    with a status that was never stored."""
    attempt = reserved_attempt(RecordStore())

    def refuse_commit(execute, sql, params, many, context):
        if _is_committing_completion(sql):
            raise Deadline()
        return execute(sql, params, many, context)

    with attempt.holding():
        with attempt.transaction() as first:
            first.complete(StoredResponse(201, [], b"{}"))
        assert first.completed
        second = attempt.transaction()
        with connection.execute_wrapper(refuse_commit), pytest.raises(Deadline), second:
            second.complete(StoredResponse(500, [], b"never stored"))
    assert IdempotencyRecord.objects.get().response_status == 201
    assert announced == [201]
    assert not second.completed


# 3. The check query runs through the same execute_wrapper whose error it diagnoses ----------


@postgres_only
def test_a_guard_raising_after_every_statement_once_past_its_budget_keeps_the_outcome(
    announced,
):
    """A query guard that raises after each statement once the budget is spent (the
    completion's included) raises after the check query too: _committed() answers False
    though the statement committed, so the committed writes and outcome are treated as
    rolled back: the operation's on_commit callbacks never run, ``completed`` is never
    announced, and run_once raises the guard's error for an outcome that is stored."""
    on_commit_ran: list[str] = []
    spent = False

    def guard(execute, sql, params, many, context):
        nonlocal spent
        result = execute(sql, params, many, context)
        if _is_committing_completion(sql):
            spent = True  # the budget ran out during the completion's round trip
        if spent:
            raise Deadline()
        return result

    def operation():
        Widget.objects.create(name="paid", size=1)
        transaction.on_commit(lambda: on_commit_ran.append("send the receipt"))
        return "ok"

    result: object = None
    try:
        with connection.execute_wrapper(guard):
            result = run_once(operation, scope="s", key="k")
    except Deadline:
        pass  # what run_once raises on 8dc8113: the stored outcome treated as rolled back
    assert IdempotencyRecord.objects.filter(key="k", state="completed").exists()
    assert Widget.objects.exists()  # the writes committed with it
    assert (result, on_commit_ran, announced) == ("ok", ["send the receipt"], [200])


# 4. An interrupt after the commit logs "lease lost, outcome discarded" ----------------------


@postgres_only
def test_an_interrupt_after_the_commit_does_not_log_the_outcome_as_discarded(caplog):
    """The interrupt is re-raised through Attempt.holding(), which releases the key:
    release() finds the row completed (by this very attempt) and logs the warning "lease
    lost, outcome discarded" for an outcome that was stored and that retries replay."""

    with (
        caplog.at_level(logging.WARNING, logger="idempotency"),
        connection.execute_wrapper(raise_after_completion(KeyboardInterrupt)),
        pytest.raises(KeyboardInterrupt),
    ):
        run_once(lambda: "ok", scope="s", key="k")
    assert run_once(lambda: "rerun", scope="s", key="k") == "ok"  # stored
    assert "outcome discarded" not in caplog.text


# 5. _takes_commit inspects the class's complete(), the call goes to the instance's ----------


class InstrumentedStore(RecordStore):
    """Counts completions by wrapping its own complete() with the documented signature."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.completions = 0
        inner = self.complete

        def complete(reservation, response):  # complete(reservation, response), as documented
            self.completions += 1
            return inner(reservation, response)

        self.complete = complete


def test_a_store_whose_instance_complete_takes_no_commit_keeps_the_plain_completion():
    """8dc8113: "a store whose complete() takes no commit argument keeps the plain
    completion". _takes_commit(type(self.store).complete) reads the class's method, but
    Attempt.complete calls self.store.complete: an instance attribute without ``commit`` gets
    ``commit=True`` and raises TypeError (on every database: the block passes commit=True)."""
    store = InstrumentedStore()
    assert run_once(lambda: 7, scope="s", key="k", store=store) == 7
    assert store.completions == 1


@postgres_only
def test_the_mixin_answers_the_stored_201_when_a_guard_raises_after_every_statement():
    """The same guard through IdempotentMixin: the widget and its 201 are committed, but the
    client is told the request failed (the guard's error escapes the view: an unhandled 500),
    and a retry then receives the 201 it was told never happened."""
    from django.test import Client

    spent = False

    def guard(execute, sql, params, many, context):
        nonlocal spent
        result = execute(sql, params, many, context)
        if _is_committing_completion(sql):
            spent = True
        if spent:
            raise Deadline()
        return result

    client = Client(raise_request_exception=False)
    with connection.execute_wrapper(guard):
        first = client.post(
            "/test/widgets/",
            {"name": "w", "size": 1},
            content_type="application/json",
            headers={"Idempotency-Key": "guarded-1"},
        )
    retry = client.post(
        "/test/widgets/",
        {"name": "w", "size": 1},
        content_type="application/json",
        headers={"Idempotency-Key": "guarded-1"},
    )
    assert retry.status_code == 201 and Widget.objects.count() == 1  # it was stored
    assert first.status_code == 201
