"""What a run measures: the operations, their variants, the table sizes, for how long."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

BENCH_USER = "bench"


@dataclass(frozen=True)
class Operation:
    name: str
    description: str
    body: str
    # The path of each protocol: "baseline" (no idempotency), "mixin" (IdempotentMixin),
    # "floor" (the minimal protocol by hand, bench/floor/protocol.py); routed by bench/urls.py.
    paths: dict[str, str]


PAYMENT = Operation(
    "payment",
    "the demo's payment (`PaymentViewSet`, the view behind `POST /payments`, routed beside its "
    "baseline and floor): a charge at the simulated gateway (its own database connection and "
    "transaction) and a Payment row",
    json.dumps({"customerId": "cust_123", "amount": 100, "currency": "USD"}),
    {
        "baseline": "/bench/baseline/payments",
        "mixin": "/bench/idempotent/payments",
        "floor": "/bench/floor/payments",
    },
)
NOTE = Operation(
    "note",
    "the cheapest real operation: token authentication and one INSERT (a note from a tiny "
    "JSON body)",
    json.dumps({"text": "hello"}),
    {
        "baseline": "/bench/baseline/notes",
        "mixin": "/bench/idempotent/notes",
        "floor": "/bench/floor/notes",
    },
)
HOT_ROW = Operation(
    "hot-row",
    "every request updates the same counter row (`select_for_update()`, then `save()`) in "
    "its transaction",
    json.dumps({"by": 1}),
    {
        "baseline": "/bench/baseline/counter",
        "mixin": "/bench/idempotent/counter",
        "floor": "/bench/floor/counter",
    },
)
OPERATIONS = {operation.name: operation for operation in (PAYMENT, NOTE, HOT_ROW)}
# The operation whose baseline a replay must beat (issue 11), and the one every stage measures.
CHEAPEST = NOTE.name
DEMO = PAYMENT.name


@dataclass(frozen=True)
class Variant:
    name: str
    protocol: str  # which of the operation's paths: "baseline", "mixin" or "floor"
    key_mode: str  # how the load generator picks keys (bench/loadgen.py)
    replayed: bool  # whether every answer must carry Idempotent-Replayed: true


# The baseline gets a fresh key too: the view ignores it, and every variant's requests cost
# the load generator the same.
BASELINE = Variant("baseline", "baseline", "fresh", False)
FLOOR = Variant("floor", "floor", "fresh", False)
FIRST = Variant("first", "mixin", "fresh", False)
REPLAY = Variant("replay", "mixin", "pool", True)
FLOOR_REPLAY = Variant("floor-replay", "floor", "pool", True)
VARIANTS = {variant.name: variant for variant in (BASELINE, FLOOR, FIRST, REPLAY, FLOOR_REPLAY)}
ALL = tuple(VARIANTS)
ISSUE_5 = ("baseline", "first", "replay")
# The pair of issue 11's first-request target, run alone in a plan's pair rounds.
FLOOR_PAIR = ("floor", "first")
# The variant whose keys a replay variant reuses (seeded through it before the stage).
SEEDED_BY = {REPLAY.name: FIRST, FLOOR_REPLAY.name: FLOOR}


def path(operation: str, variant: str) -> str:
    return OPERATIONS[operation].paths[VARIANTS[variant].protocol]


@dataclass(frozen=True)
class Cell:
    """One operation at one concurrency: its variants run back to back in every round."""

    operation: str
    concurrency: int
    variants: tuple[str, ...] = ALL


@dataclass(frozen=True)
class Stage:
    rows: int  # records stored before the stage
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Plan:
    name: str
    stages: tuple[Stage, ...]
    rounds: int
    warmup: float  # seconds run and discarded before each measurement
    duration: float  # seconds measured
    replay_pool: int  # completed keys the replays cycle through
    purge_expired: int  # expired records the purge deletes, beside the live ones of the stages
    store_probes: int  # new keys (and their replays) timed through RecordStore at each stage
    # Rounds after those, of each cell's floor and first request alone, back to back: issue 11
    # judges the first request by its throughput over the floor's in the same round.
    pair_rounds: int = 0

    @property
    def rows(self) -> tuple[int, ...]:
        return tuple(stage.rows for stage in self.stages)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows": list(self.rows)}


def _payment(*, floor_at: tuple[int, ...]) -> tuple[Cell, ...]:
    """The demo's payment at 1, 8 and 32 (issue 5's cells); the floor's variants where asked."""
    return tuple(
        Cell(DEMO, concurrency, ALL if concurrency in floor_at else ISSUE_5)
        for concurrency in (1, 8, 32)
    )


# Full: the payment at every size and concurrency (the floor's variants at concurrency 8); the
# two new operations at concurrency 8 at the smallest and largest size; then 4 more rounds of the
# floor and the first request in each of their 6 cells. 252 runs of 1.2 s: about 8 minutes on 2
# cores, 9.5 when other work takes a core.
_NEW_OPERATIONS = (Cell(NOTE.name, 8), Cell(HOT_ROW.name, 8))
FULL = Plan(
    "full",
    (
        Stage(0, (*_payment(floor_at=(8,)), *_NEW_OPERATIONS)),
        Stage(100_000, _payment(floor_at=())),
        Stage(1_000_000, (*_payment(floor_at=(8,)), *_NEW_OPERATIONS)),
    ),
    4,
    0.2,
    1.0,
    300,
    1_000_000,
    1000,
    pair_rounds=4,
)
# Quick (CI): every operation and variant once, at two sizes, in well under a minute.
QUICK = Plan(
    "quick",
    (
        Stage(0, (Cell(DEMO, 1, ISSUE_5), Cell(DEMO, 8), *_NEW_OPERATIONS)),
        Stage(10_000, (Cell(DEMO, 1, ISSUE_5), Cell(DEMO, 8, ISSUE_5))),
    ),
    1,
    0.2,
    0.6,
    50,
    10_000,
    100,
)


def rotation(items: tuple[str, ...], shift: int) -> list[str]:
    shift %= len(items)
    return [*items[shift:], *items[:shift]]
