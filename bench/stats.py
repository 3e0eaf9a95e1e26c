"""Samples of one run each, and what is made of them: percentiles, CPU per request, pooling."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Sample:
    operation: str
    rows: int
    concurrency: int
    variant: str
    round: int
    throughput: float
    requests: int
    errors: int
    error_samples: list[str]
    loadgen_cpu_share: float
    cpu: dict[str, float]  # CPU milliseconds per request by process group
    latencies_us: list[int] = field(repr=False)
    # The load generator's connections on each gunicorn worker process (by pid).
    connections_by_worker: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_us)
        return {
            "operation": self.operation,
            "rows": self.rows,
            "concurrency": self.concurrency,
            "variant": self.variant,
            "round": self.round,
            "throughput": round(self.throughput, 1),
            "requests": self.requests,
            "p50_ms": percentile_ms(ordered, 50),
            "p99_ms": percentile_ms(ordered, 99),
            "errors": self.errors,
            "error_samples": self.error_samples,
            "loadgen_cpu_share": round(self.loadgen_cpu_share, 3),
            "cpu_ms_per_request": self.cpu,
            "connections_by_worker": self.connections_by_worker,
        }


def percentile_ms(ordered: list[int], percent: float) -> float:
    """Nearest-rank percentile of sorted microseconds, in milliseconds."""
    if not ordered:
        return 0.0
    rank = max(1, -(-len(ordered) * percent // 100))
    return round(ordered[int(rank) - 1] / 1000, 2)


def per_request(used: dict[str, float], result: dict[str, Any]) -> dict[str, float]:
    """CPU ms per request sent: in the app, its database backends, the load generator, and
    everything else on the machine meanwhile (other users, PostgreSQL's WAL writer, ...)."""
    sent = max(result["sent"], 1)
    other = used["machine"] - used["app"] - used["db"] - result["cpu_seconds"]
    return {
        "app": round(used["app"] * 1000 / sent, 2),
        "db": round(used["db"] * 1000 / sent, 2),
        "loadgen": round(result["cpu_seconds"] * 1000 / sent, 2),
        "other": round(max(other, 0.0) * 1000 / sent, 2),
        "machine_busy_share": round(used["machine"] / used["capacity"], 3),
        "other_cores": round(max(other, 0.0) / (used["capacity"] / (os.cpu_count() or 1)), 2),
    }


def pooled(samples: list[Sample]) -> list[dict[str, Any]]:
    """One row per (operation, rows, concurrency, variant): latencies pooled over the rounds.

    Only the rounds in which the cell's baseline ran (every variant, alternating): the pair
    rounds, of the floor and the first request alone, serve only the verdict that pairs those
    two round by round. A row pooled from more rounds than the baseline's would be compared
    with it across different stretches of the machine's time.
    """
    with_baseline = {
        (sample.operation, sample.rows, sample.concurrency, sample.round)
        for sample in samples
        if sample.variant == "baseline"
    }
    cells: dict[tuple[str, int, int, str], list[Sample]] = {}
    for sample in samples:
        if (sample.operation, sample.rows, sample.concurrency, sample.round) not in with_baseline:
            continue
        cell = (sample.operation, sample.rows, sample.concurrency, sample.variant)
        cells.setdefault(cell, []).append(sample)
    rows = []
    for (operation, stored, concurrency, variant), group in cells.items():
        ordered = sorted(latency for sample in group for latency in sample.latencies_us)
        throughputs = sorted(sample.throughput for sample in group)
        rows.append(
            {
                "operation": operation,
                "rows": stored,
                "concurrency": concurrency,
                "variant": variant,
                "throughput": round(throughputs[len(throughputs) // 2], 1),
                "throughput_rounds": [round(value, 1) for value in throughputs],
                "p50_ms": percentile_ms(ordered, 50),
                "p99_ms": percentile_ms(ordered, 99),
                "requests": len(ordered),
                "errors": sum(sample.errors for sample in group),
                "loadgen_cpu_share": round(max(s.loadgen_cpu_share for s in group), 3),
                "cpu_ms_per_request": {
                    name: round(sum(s.cpu[name] for s in group) / len(group), 2)
                    for name in group[0].cpu
                },
            }
        )
    return rows
