"""The store's protocol under any interleaving of attempts, clock moves and purges.

A hypothesis state machine drives one :class:`RecordStore` and one :class:`Purger` on a fake
clock across a few keys, with leases and expiries drawn per attempt (expiry shorter than the
lease included). A model in plain dicts says what each key must hold; after every step the
database is compared with it and the protocol's invariants are checked.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from idempotency.models import IdempotencyRecord
from idempotency.purge import Purger
from idempotency.store import (
    InProgress,
    LeaseLostError,
    Mismatch,
    RecordStore,
    Replay,
    Reserved,
    StoredResponse,
)
from tests.conftest import FakeClock

pytestmark = pytest.mark.django_db(transaction=True)

KEYS = [("alice", "k1"), ("bob", "k1"), ("alice", "k2")]
# Each fingerprint stands for one request: its method and path come with it.
REQUESTS = {"f1": ("POST", "/one"), "f2": ("PUT", "/two")}
LEASES = [timedelta(seconds=10), timedelta(seconds=60)]
EXPIRIES = [timedelta(seconds=5), timedelta(seconds=30), timedelta(seconds=120)]
# Steps of the clock: within a lease, past the short lease and expiry, past every lease.
STEPS = [timedelta(seconds=s) for s in (1, 9, 11, 31, 61, 121)]
OUTCOMES = [
    StoredResponse(201, [("Content-Type", "application/json")], b'{"id": 1}'),
    StoredResponse(200, [("Location", "/x")], b"second"),
]


@dataclass
class Attempt:
    """One reservation the store granted, as its holder sees it."""

    key: tuple[str, str]
    fingerprint: str
    reservation: Reserved
    lease_ends: datetime
    expiry: timedelta
    finished: bool = False  # completed or released by its holder

    def __repr__(self) -> str:
        return f"Attempt({self.key}, {self.fingerprint}, until {self.lease_ends:%H:%M:%S})"


@dataclass
class Expected:
    """What the model says one key's record holds."""

    fingerprint: str
    state: str
    token: uuid.UUID
    locked_until: datetime | None
    expires_at: datetime
    outcome: StoredResponse | None = None


@dataclass
class Final:
    """A completed outcome, which must stay unchanged until ``expires_at``."""

    expires_at: datetime
    fingerprint: str
    outcome: StoredResponse


class StoreProtocol(RuleBasedStateMachine):
    attempts = Bundle("attempts")

    def __init__(self) -> None:
        super().__init__()
        IdempotencyRecord.objects.all().delete()  # the database outlives each example
        self.clock = FakeClock()
        self.store = RecordStore(clock=self.clock)
        self.model: dict[tuple[str, str], Expected] = {}
        self.final: dict[tuple[str, str], Final] = {}
        self.granted: list[Attempt] = []

    # The model -----------------------------------------------------------------------------

    def expected_decision(self, key, fingerprint):
        """The decision a reserve gets now; ``(Reserved, taken_over)`` for a reservation."""
        now = self.clock.now
        record = self.model.get(key)
        if record is None:
            return (Reserved, False)
        live = record.state == "in_progress" and record.locked_until > now
        if live and record.fingerprint != fingerprint:
            return Mismatch(*REQUESTS[record.fingerprint])
        if live:
            return InProgress(record.locked_until - now)
        if record.expires_at <= now:
            return (Reserved, record.state == "in_progress")  # a new key; a dead holder fenced
        if record.fingerprint != fingerprint:
            return Mismatch(*REQUESTS[record.fingerprint])
        if record.state == "completed":
            return Replay(record.outcome)
        return (Reserved, True)  # the holder's lease ran out: taken over

    def holder(self, attempt: Attempt) -> bool:
        record = self.model.get(attempt.key)
        return (
            record is not None
            and record.state == "in_progress"
            and record.token == attempt.reservation.token
        )

    def row(self, key: tuple[str, str]) -> IdempotencyRecord | None:
        return IdempotencyRecord.objects.filter(scope=key[0], key=key[1]).first()

    # Rules ---------------------------------------------------------------------------------

    @rule(
        target=attempts,
        key=st.sampled_from(KEYS),
        fingerprint=st.sampled_from(sorted(REQUESTS)),
        lease=st.sampled_from(LEASES),
        expiry=st.sampled_from(EXPIRIES),
    )
    def reserve(self, key, fingerprint, lease, expiry):
        return self.attempt(key, fingerprint, lease, expiry)

    @rule(
        target=attempts,
        earlier=attempts,
        lease=st.sampled_from(LEASES),
        expiry=st.sampled_from(EXPIRIES),
    )
    def retry(self, earlier, lease, expiry):
        """The client sends an earlier attempt's request again (a view or call may set
        another lease and expiry than the one that reserved it)."""
        return self.attempt(earlier.key, earlier.fingerprint, lease, expiry)

    def attempt(self, key, fingerprint, lease, expiry):
        now = self.clock.now
        expected = self.expected_decision(key, fingerprint)
        method, path = REQUESTS[fingerprint]
        decision = self.store.reserve(
            scope=key[0],
            key=key[1],
            fingerprint=fingerprint,
            method=method,
            path=path,
            lease=lease,
            expiry=expiry,
        )
        taken_over = isinstance(decision, Reserved) and decision.taken_over
        event(f"reserve: {type(decision).__name__}{' (taken over)' if taken_over else ''}")
        final = self.final.get(key)
        if isinstance(decision, Replay):
            assert final is not None and final.expires_at > now, "replayed what never completed"
            assert fingerprint == final.fingerprint, "a mismatching fingerprint was replayed"
            assert decision.response == final.outcome, "a replay differs from the completion"
        if not isinstance(decision, Reserved):
            assert decision == expected, "a retry must be told what the key holds"
            return multiple()
        live = [a for a in self.granted if a.key == key and not a.finished and a.lease_ends > now]
        assert not live, f"at most one live holder per key: granted beside {live}"
        assert not (final and final.expires_at > now), "a completed outcome was run again"
        assert expected == (Reserved, decision.taken_over), f"expected {expected}"
        previous = self.model.get(key)
        floor = previous.expires_at if previous is not None else now
        self.model[key] = Expected(
            fingerprint=fingerprint,
            state="in_progress",
            token=decision.token,
            locked_until=now + lease,
            expires_at=max(floor, now + lease, now + expiry),
        )
        self.final.pop(key, None)
        attempt = Attempt(key, fingerprint, decision, now + lease, expiry)
        self.granted.append(attempt)
        return attempt

    @rule(attempt=attempts, outcome=st.sampled_from(OUTCOMES))
    def complete(self, attempt, outcome):
        before = self.row(attempt.key)
        if not self.holder(attempt):
            # Fenced out (taken over, expired and reused, purged) or completed already.
            event("complete: fenced out")
            with pytest.raises(LeaseLostError):
                self.store.complete(attempt.reservation, outcome)
            assert_same_row(before, self.row(attempt.key), "a fenced-out completion")
            return
        event(f"complete: {'late' if attempt.lease_ends <= self.clock.now else 'in time'}")
        self.store.complete(attempt.reservation, outcome)
        attempt.finished = True
        expires_at = self.clock.now + attempt.expiry
        record = self.model[attempt.key]
        record.state, record.locked_until = "completed", None
        record.outcome, record.expires_at = outcome, expires_at
        self.final[attempt.key] = Final(expires_at, attempt.fingerprint, outcome)

    @rule(attempt=attempts)
    def release(self, attempt):
        before = self.row(attempt.key)
        released = self.store.release(attempt.reservation)
        if not self.holder(attempt):
            assert released is False
            assert_same_row(before, self.row(attempt.key), "a fenced-out or late release")
            return
        assert released is True
        attempt.finished = True
        del self.model[attempt.key]

    @rule(step=st.sampled_from(STEPS))
    def advance(self, step):
        self.clock.advance(seconds=step.total_seconds())

    @precondition(lambda self: self.model)
    @rule(key=st.sampled_from(KEYS), past=st.sampled_from(["lease", "expiry"]))
    def advance_past(self, key, past):
        """Move the clock to just past a key's lease or expiry, where the decisions turn."""
        record = self.model.get(key)
        moment = record and (record.locked_until if past == "lease" else record.expires_at)
        if moment is not None and moment >= self.clock.now:
            self.clock.now = moment + timedelta(seconds=1)

    @precondition(lambda self: self.model)
    @rule(batch_size=st.sampled_from([1, 100]))
    def purge(self, batch_size):
        now = self.clock.now
        before = set(IdempotencyRecord.objects.values_list("scope", "key"))
        Purger(batch_size=batch_size, clock=self.clock).run()
        deleted = before - set(IdempotencyRecord.objects.values_list("scope", "key"))
        event(f"purge: deleted {len(deleted)}")
        for key, record in list(self.model.items()):
            live = record.state == "in_progress" and record.locked_until > now
            if record.expires_at <= now and not live:
                del self.model[key]
            else:
                assert key not in deleted, f"purge deleted {key}, live or unexpired"

    # Invariants ----------------------------------------------------------------------------

    @invariant()
    def a_live_holder_keeps_its_key(self):
        now = self.clock.now
        for attempt in self.granted:
            if attempt.finished or attempt.lease_ends <= now:
                continue
            row = self.row(attempt.key)
            assert row is not None, f"{attempt} lost its row under a live lease"
            assert (row.state, row.lease_token) == ("in_progress", attempt.reservation.token), (
                f"{attempt} was overrun under a live lease"
            )

    @invariant()
    def a_completed_outcome_stays_until_it_expires(self):
        now = self.clock.now
        for key, final in self.final.items():
            if final.expires_at <= now:
                continue
            row = self.row(key)
            assert row is not None, f"{key} was deleted before its outcome expired"
            assert row.state == "completed"
            assert row.fingerprint == final.fingerprint
            assert stored(row) == final.outcome

    @invariant()
    def the_database_holds_what_the_model_says(self):
        rows = {(row.scope, row.key): row for row in IdempotencyRecord.objects.all()}
        assert set(rows) == set(self.model), "records present"
        for key, expected in self.model.items():
            row = rows[key]
            assert (row.state, row.fingerprint) == (expected.state, expected.fingerprint)
            assert (row.method, row.path) == REQUESTS[expected.fingerprint]
            assert row.lease_token == expected.token
            assert row.locked_until == expected.locked_until
            assert row.expires_at == expected.expires_at, f"{key} expires_at"
            if expected.state == "completed":
                assert stored(row) == expected.outcome
            else:
                assert (row.response_status, bytes(row.response_body)) == (None, b"")


def stored(row: IdempotencyRecord) -> StoredResponse:
    headers = [(name, value) for name, value in row.response_headers]
    return StoredResponse(row.response_status or 0, headers, bytes(row.response_body))


def assert_same_row(before, after, what):
    def fields(row):
        if row is None:
            return None
        return {
            f.name: bytes(v) if isinstance(v := getattr(row, f.attname), memoryview) else v
            for f in IdempotencyRecord._meta.concrete_fields
        }

    assert fields(before) == fields(after), f"{what} changed the record"


MACHINE_SETTINGS = settings(
    max_examples=75,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(params=["native", "orm"])
def machine_settings(request, monkeypatch):
    """The native INSERT ... ON CONFLICT, and the ORM fallback (fewer examples: only the
    INSERT differs)."""
    if request.param == "native":
        return MACHINE_SETTINGS
    from idempotency import store as store_module

    native = store_module.record_statements
    monkeypatch.setattr(
        store_module,
        "record_statements",
        lambda alias: dataclasses.replace(native(alias), insert=None),
    )
    return settings(MACHINE_SETTINGS, max_examples=25)


def test_the_store_protocol_holds_under_any_interleaving(machine_settings):
    run_state_machine_as_test(StoreProtocol, settings=machine_settings)
