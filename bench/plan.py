"""What a run measures: the variants, the table sizes, the concurrencies, for how long."""

from __future__ import annotations

import json
from dataclasses import dataclass

PAYMENTS_PATH = "/payments"
BASELINE_PATH = "/bench/baseline/payments"  # routed by bench/urls.py
BODY = json.dumps({"customerId": "cust_123", "amount": 100, "currency": "USD"})
BENCH_USER = "bench"


@dataclass(frozen=True)
class Plan:
    name: str
    rows: tuple[int, ...]  # records stored before each stage
    concurrency: tuple[int, ...]
    rounds: int
    warmup: float  # seconds run and discarded before each measurement
    duration: float  # seconds measured
    replay_pool: int  # completed keys the replays cycle through
    purge_expired: int  # expired records the purge deletes, beside the live ones of the stages
    store_probes: int  # new keys (and their replays) timed through RecordStore at each stage


FULL = Plan("full", (0, 100_000, 1_000_000), (1, 8, 32), 5, 0.3, 1.5, 300, 1_000_000, 1000)
QUICK = Plan("quick", (0, 10_000), (1, 8), 1, 0.3, 1.0, 50, 10_000, 100)


@dataclass(frozen=True)
class Variant:
    name: str
    path: str
    key_mode: str  # how the load generator picks keys (bench/loadgen.py)
    replayed: bool  # whether every answer must carry Idempotent-Replayed: true


# The baseline gets a fresh key too: the view ignores it, and every variant's requests cost
# the load generator the same.
BASELINE = Variant("baseline", BASELINE_PATH, "fresh", False)
FIRST = Variant("first", PAYMENTS_PATH, "fresh", False)
REPLAY = Variant("replay", PAYMENTS_PATH, "pool", True)
VARIANTS = (BASELINE, FIRST, REPLAY)


def rotation(items: tuple[Variant, ...], shift: int) -> list[Variant]:
    shift %= len(items)
    return [*items[shift:], *items[:shift]]
