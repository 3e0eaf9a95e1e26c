"""Review of 071d498 (durations written into the store's statements, no commit hook for a
completion nobody hears) and of the bench's pair rounds (0bb8dda, 3049e89).

``test_finding_*`` tests demonstrate defects and fail now; the others are attacks that held.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from django.db import connection, transaction

from idempotency import reserve_function, signals
from idempotency.dbclock import database_clock
from idempotency.models import IdempotencyRecord
from idempotency.operations import run_once
from idempotency.options import MAX_DURATION
from idempotency.purge import Purger
from idempotency.statements import record_statements
from idempotency.store import RecordStore, Replay, Reserved, StoredResponse
from tests.conftest import FakeClock

pytestmark = pytest.mark.django_db(transaction=True)

LOGGER = logging.getLogger("idempotency")


@pytest.fixture
def nobody_listens():
    """The demo's logging (``idempotency`` at WARNING) and no receiver of ``completed``: what
    a project that has not wired metrics yet runs with."""
    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    saved = list(signals.completed.receivers)
    signals.completed.receivers = []
    signals.completed.sender_receivers_cache.clear()
    try:
        yield
    finally:
        LOGGER.setLevel(level)
        signals.completed.receivers = saved
        signals.completed.sender_receivers_cache.clear()


# --- Findings -------------------------------------------------------------------------------


def test_finding_completed_receiver_connected_before_commit_is_not_sent(nobody_listens):
    """``completed`` is documented as sent once the outcome's transaction commits, to the
    receivers connected then. A receiver connected after the completion but before the commit
    (run_once inside a caller's transaction, as a consumer commits its own bookkeeping with it)
    was sent the signal before 071d498; now the commit hook is skipped when nobody listened at
    the completion, and the signal is never sent."""
    seen = []

    def receiver(sender, status, **kwargs):
        seen.append(status)

    try:
        with transaction.atomic():
            assert run_once(lambda: "done", scope="review:signals", key="late-receiver") == "done"
            signals.completed.connect(receiver, weak=False)  # before the commit
        assert IdempotencyRecord.objects.get(key="late-receiver").state == "completed"
    finally:
        signals.completed.disconnect(receiver)
    assert seen == [200]


def test_finding_completed_log_line_lost_when_info_is_enabled_before_commit(nobody_listens, caplog):
    """Same check, the log: INFO turned on for ``idempotency`` before the outcome's commit (the
    line is written at the commit) no longer gets the ``completed`` line."""
    with transaction.atomic():
        run_once(lambda: "done", scope="review:signals", key="late-log")
        LOGGER.setLevel(logging.INFO)  # before the commit
        caplog.set_level(logging.INFO, logger="idempotency")
    outcomes = [
        getattr(record, "idempotency_outcome", None)
        for record in caplog.records
        if record.name == "idempotency"
    ]
    assert "completed" in outcomes


def test_finding_pair_rounds_leak_into_issue_5_first_vs_baseline_verdict():
    """bench: the pair rounds (floor and first request alone, 0bb8dda) are pooled into the
    first request's ``latencies`` row, which issue 5's target divides by the baseline's median
    from the interleaved rounds only. In every round that ran both, the first request made 80%
    of the baseline (target: >= 85%, MISSED); faster pair rounds turn the verdict into met."""
    from bench.plan import DEMO
    from bench.stats import Sample, pooled
    from bench.targets import throughput_targets

    def sample(variant: str, round_: int, throughput: float) -> Sample:
        return Sample(
            operation=DEMO,
            rows=0,
            concurrency=8,
            variant=variant,
            round=round_,
            throughput=throughput,
            requests=1000,
            errors=0,
            error_samples=[],
            loadgen_cpu_share=0.1,
            cpu={"app": 1.0, "db": 0.5},
            latencies_us=[1000] * 10,
        )

    samples = []
    for round_ in range(4):  # the interleaved rounds (plan.rounds)
        for variant, throughput in (
            ("baseline", 1000.0),
            ("first", 800.0),  # 0.80x the baseline, round by round
            ("floor", 810.0),
            ("replay", 2500.0),
            ("floor-replay", 2600.0),
        ):
            samples.append(sample(variant, round_, throughput))
    for round_ in range(4, 8):  # the pair rounds (plan.pair_rounds), the machine less busy
        samples += [sample("floor", round_, 1010.0), sample("first", round_, 1000.0)]

    results = {
        "samples": [s.summary() for s in samples],
        "latencies": pooled(samples),
    }
    verdicts = {}
    throughput_targets(results, lambda target, measured, met: verdicts.setdefault(target, met))
    issue_5 = verdicts[
        "First-request throughput >= 85% of the baseline's at concurrency 8 (payment)"
    ]
    # Every round that measured both says 0.80x: the target is missed.
    assert issue_5 is False


# --- Attacks that held ----------------------------------------------------------------------


DURATIONS = [
    timedelta(microseconds=1),
    timedelta(seconds=0.5),
    timedelta(days=1),
    timedelta(days=1, microseconds=1),
    timedelta(days=400, seconds=86399, microseconds=999999),
    MAX_DURATION,
]


@pytest.mark.parametrize("style", ["postgres", "sql_standard", "iso_8601", "postgres_verbose"])
@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Australia/Lord_Howe"])
@pytest.mark.parametrize("duration", DURATIONS, ids=str)
def test_written_interval_equals_the_parameter_in_every_interval_style_and_zone(
    style, zone, duration
):
    """Across a DST change (7 March + 1 day in New York; Lord Howe's half hour) and in every
    IntervalStyle, the written interval lands where psycopg's adapted timedelta did."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's IntervalStyle and session time zone")
    clock = database_clock(connection)
    assert clock is not None
    start = "TIMESTAMPTZ '2026-03-07 12:00:00+00'"
    written = clock.later_by(duration).replace(clock.now, start)
    passed = clock.later.replace(clock.now, start)
    with connection.cursor() as cursor:
        cursor.execute(f"SET IntervalStyle = {style}")
        cursor.execute(f"SET TimeZone = '{zone}'")
        try:
            cursor.execute(f"SELECT {written}, {passed}", [clock.interval(duration)])
            one, other = cursor.fetchone()
        finally:
            cursor.execute("RESET IntervalStyle")
            cursor.execute("RESET TimeZone")
    assert one == other


def test_statement_texts_carry_no_stray_percent_and_keep_their_parameter_count():
    statements = record_statements(connection.alias)
    if statements.clock is None:
        pytest.skip("no database clock here")
    for duration in DURATIONS:
        sql = statements.complete_on_db_clock(duration)
        assert sql.count("%s") == statements.complete.count("%s") - 2
        assert "%" not in sql.replace("%s", "").replace("%%", "")
    for clock_given in (False, True):
        call = reserve_function.call(clock_given=clock_given, lease=MAX_DURATION, keep=MAX_DURATION)
        assert call.count("%s") == 6 + clock_given
        assert "%" not in call.replace("%s", "")


@pytest.mark.parametrize("use_function", [True, False], ids=["function", "statements"])
def test_an_app_clock_sets_every_deadline_exactly(use_function, monkeypatch):
    if not use_function:
        monkeypatch.setattr(reserve_function, "available", lambda connection: False)
    clock = FakeClock(datetime(2026, 3, 7, 12, 0, tzinfo=UTC))
    store = RecordStore(clock=clock)
    lease, expiry = timedelta(seconds=7, microseconds=123457), timedelta(days=400, microseconds=9)
    reserved = store.reserve(
        scope="s", key="app", fingerprint="f", method="POST", path="/p", lease=lease, expiry=expiry
    )
    assert isinstance(reserved, Reserved)
    record = IdempotencyRecord.objects.get(pk=reserved.record_id)
    assert (record.created_at, record.locked_until, record.expires_at) == (
        clock.now,
        clock.now + lease,
        clock.now + expiry,
    )
    clock.advance(seconds=8)  # the lease ran out: taken over
    again = store.reserve(
        scope="s", key="app", fingerprint="f", method="POST", path="/p", lease=lease, expiry=expiry
    )
    assert isinstance(again, Reserved) and again.taken_over
    store.complete(again, StoredResponse(201, [], b"{}"))
    record.refresh_from_db()
    assert record.completed_at == clock.now and record.expires_at == clock.now + expiry


@pytest.mark.parametrize("use_function", [True, False], ids=["function", "statements"])
def test_on_the_database_clock_takeover_expiry_and_purge_follow_the_written_durations(
    use_function, monkeypatch
):
    if not use_function:
        monkeypatch.setattr(reserve_function, "available", lambda connection: False)
    store = RecordStore()
    tiny = timedelta(microseconds=1)

    reserve = partial(store.reserve, scope="s", fingerprint="f", method="POST", path="/p")

    # A lease of one microsecond runs out at once: the next attempt takes the key over.
    first = reserve(key="short-lease", lease=tiny, expiry=MAX_DURATION)
    time.sleep(0.01)
    second = reserve(key="short-lease", lease=tiny, expiry=MAX_DURATION)
    assert isinstance(second, Reserved) and second.taken_over
    # Completed with the longest expiry: replayed, never purged.
    store.complete(second, StoredResponse(201, [], b"kept"))
    assert first.record_id == second.record_id
    # Completed with an expiry of a microsecond: gone for the purge, a new key for a retry.
    brief = reserve(key="short-expiry", lease=timedelta(seconds=60), expiry=tiny)
    store.complete(brief, StoredResponse(201, [], b"brief"))
    time.sleep(0.01)
    assert Purger().run().deleted == 1
    assert isinstance(reserve(key="short-lease", lease=tiny, expiry=MAX_DURATION), Replay)
    assert isinstance(
        reserve(key="short-expiry", lease=timedelta(seconds=60), expiry=tiny), Reserved
    )


def test_a_receiver_connected_during_the_operation_hears_the_completion(nobody_listens):
    seen = []

    def receiver(sender, status, **kwargs):
        seen.append(status)

    def operation():
        signals.completed.connect(receiver, weak=False)  # after the reservation
        return "done"

    try:
        run_once(operation, scope="review:signals", key="early-receiver")
    finally:
        signals.completed.disconnect(receiver)
    assert seen == [200]


def test_a_raising_on_commit_callback_still_announces_the_completion_once():
    seen = []

    def receiver(sender, status, **kwargs):
        seen.append(status)

    def boom():
        raise RuntimeError("callback")

    def operation():
        transaction.on_commit(boom)
        return "done"

    signals.completed.connect(receiver, weak=False)
    try:
        assert run_once(operation, scope="review:signals", key="raising-callback") == "done"
    finally:
        signals.completed.disconnect(receiver)
    assert seen == [200]


def test_a_raising_on_commit_callback_with_nobody_listening_keeps_the_outcome(nobody_listens):
    def boom():
        raise RuntimeError("callback")

    def operation():
        transaction.on_commit(boom)
        return "done"

    assert run_once(operation, scope="review:signals", key="raising-quiet") == "done"
    assert run_once(lambda: "again", scope="review:signals", key="raising-quiet") == "done"
