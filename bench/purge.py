"""Purge of expired records: how fast, and the longest any lock is held.

The purge command runs in a process of its own, as cron would run it, with ``PGAPPNAME`` set
so that PostgreSQL names its connection. Two observers watch it from other connections:

- a sampler polls ``pg_stat_activity`` about every 6 ms: a row lock lives until its
  transaction ends, so the longest transaction seen bounds the longest lock (it is bracketed by
  the last sample that saw it and the first that did not); it also notes the table-level locks
  the purge takes (``RowExclusiveLock`` lets reads and inserts through; anything stronger
  would block traffic);
- a prober acts like a request that reuses a key the purge is about to delete: it locks the
  row ``SELECT ... FOR UPDATE`` as ``reserve()`` does, picking among the next rows in the
  purge's order, and records how long it waited.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.database import RECORD_TABLE, connect

APPLICATION_NAME = "bench-purge"
COMMAND = "purge_idempotency_records"


def command_available(root: Path) -> bool:
    return (root / "idempotency" / "management" / "commands" / f"{COMMAND}.py").exists()


@dataclass
class Transaction:
    started: datetime
    last_seen: datetime
    gone_by: datetime | None = None

    @property
    def low_ms(self) -> float:
        return (self.last_seen - self.started).total_seconds() * 1000

    @property
    def high_ms(self) -> float | None:
        if self.gone_by is None:
            return None
        return (self.gone_by - self.started).total_seconds() * 1000


@dataclass
class Sampler:
    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    transactions: dict[tuple[int, datetime], Transaction] = field(default_factory=dict)
    table_locks: set[str] = field(default_factory=set)
    samples: int = 0
    seconds: float = 0.0

    def run(self) -> None:
        query = (
            "SELECT pid, xact_start, clock_timestamp() FROM pg_stat_activity "
            "WHERE application_name = %s AND xact_start IS NOT NULL"
        )
        locks = (
            "SELECT DISTINCT l.mode FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE a.application_name = %s AND l.relation = %s::regclass"
        )
        began = time.perf_counter()
        with connect(self.url) as connection:
            open_now: set[tuple[int, datetime]] = set()
            while not self.stop.is_set():
                rows = connection.execute(query, (APPLICATION_NAME,)).fetchall()
                clock_row = connection.execute("SELECT clock_timestamp()").fetchone()
                assert clock_row is not None
                now: datetime = clock_row[0]
                seen = set()
                for pid, started, sampled_at in rows:
                    ident = (pid, started)
                    seen.add(ident)
                    known = self.transactions.get(ident)
                    if known is None:
                        self.transactions[ident] = Transaction(started, sampled_at)
                    else:
                        known.last_seen = sampled_at
                for ident in open_now - seen:
                    self.transactions[ident].gone_by = now
                open_now = seen
                if self.samples % 5 == 0:
                    for (mode,) in connection.execute(locks, (APPLICATION_NAME, RECORD_TABLE)):
                        self.table_locks.add(str(mode))
                self.samples += 1
                time.sleep(0.005)
        self.seconds = time.perf_counter() - began

    def longest(self) -> tuple[float, float | None]:
        """(at least, at most) milliseconds of the longest transaction seen."""
        if not self.transactions:
            return 0.0, None
        longest = max(self.transactions.values(), key=lambda t: t.low_ms)
        highs = [t.high_ms for t in self.transactions.values()]
        high = None if None in highs else max(h for h in highs if h is not None)
        return longest.low_ms, high


@dataclass
class Prober:
    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    waits_ms: list[float] = field(default_factory=list)

    def run(self) -> None:
        next_rows = (
            f"SELECT scope, key FROM {RECORD_TABLE} WHERE expires_at <= now() "
            "ORDER BY expires_at OFFSET %s LIMIT 1"
        )
        lock = f"SELECT id FROM {RECORD_TABLE} WHERE scope = %s AND key = %s FOR UPDATE"
        with connect(self.url) as connection:
            while not self.stop.is_set():
                row = connection.execute(next_rows, (random.randrange(2000),)).fetchone()
                if row is not None:
                    began = time.perf_counter()
                    with connection.transaction():
                        connection.execute(lock, row)
                    self.waits_ms.append((time.perf_counter() - began) * 1000)
                time.sleep(0.02)


@dataclass
class PurgeResult:
    expired: int
    live: int
    deleted: int
    live_after: int
    seconds: float
    records_per_second: float
    batch_seconds: float
    records_per_second_batches: float
    longest_transaction_ms_at_least: float
    longest_transaction_ms_at_most: float | None
    transaction_ms_p50: float
    transaction_ms_p99: float
    transactions_seen: int
    sample_interval_ms: float
    table_locks: list[str]
    probes: int
    probe_max_wait_ms: float
    probe_p99_wait_ms: float
    output: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(root: Path, url: str, env: dict[str, str], expired: int, live: int) -> PurgeResult:
    """Run the purge command over ``expired`` expired rows (beside ``live`` live ones)."""
    sampler, prober = Sampler(url), Prober(url)
    threads = [threading.Thread(target=observer.run, daemon=True) for observer in (sampler, prober)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    began = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "manage.py", COMMAND],
        cwd=root,
        env={**env, "PGAPPNAME": APPLICATION_NAME},
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - began
    sampler.stop.set()
    prober.stop.set()
    for thread in threads:
        thread.join()
    if completed.returncode != 0:
        raise RuntimeError(f"{COMMAND} failed:\n{completed.stdout}\n{completed.stderr}")
    match = re.search(r"Deleted (\d+)", completed.stdout)
    deleted = int(match.group(1)) if match else -1
    low, high = sampler.longest()
    starts = [t.started for t in sampler.transactions.values()]
    ends = [t.gone_by or t.last_seen for t in sampler.transactions.values()]
    batch_seconds = (max(ends) - min(starts)).total_seconds() if starts else seconds
    waits = sorted(prober.waits_ms) or [0.0]
    durations = sorted(t.low_ms for t in sampler.transactions.values()) or [0.0]
    return PurgeResult(
        expired=expired,
        live=live,
        deleted=deleted,
        live_after=-1,
        seconds=seconds,
        records_per_second=deleted / seconds,
        batch_seconds=batch_seconds,
        records_per_second_batches=deleted / batch_seconds if batch_seconds else 0.0,
        longest_transaction_ms_at_least=low,
        longest_transaction_ms_at_most=high,
        transaction_ms_p50=durations[len(durations) // 2],
        transaction_ms_p99=durations[min(len(durations) - 1, int(len(durations) * 0.99))],
        transactions_seen=len(sampler.transactions),
        sample_interval_ms=sampler.seconds * 1000 / max(sampler.samples, 1),
        table_locks=sorted(sampler.table_locks),
        probes=len(prober.waits_ms),
        probe_max_wait_ms=waits[-1],
        probe_p99_wait_ms=waits[min(len(waits) - 1, int(len(waits) * 0.99))],
        output=completed.stdout.strip(),
    )
