"""The targets of issue 5, judged on a run's results."""

from __future__ import annotations

from typing import Any

from bench.database import RECORD_TABLE

STATEMENTS = {"SELECT", "INSERT", "UPDATE", "DELETE"}
OPERATION_TABLES = ("payments_", "gateway_")
# Latency is "flat" when a variant's p50, relative to the baseline's in the same round (the
# baseline reads no records, so this cancels the machine's drift over the run), changes by no
# more than this factor from the smallest table to the largest, at concurrency 1 and 8 (at 32
# the p50 is mostly queueing for the CPUs).
FLAT_TOLERANCE = 1.20


def split(labels: list[str]) -> dict[str, Any]:
    """Statements vs transaction control, and which touch the record table or the operation."""
    bare = [label.split(": ", 1)[1] for label in labels]
    statements = [label for label in bare if label.split()[0] in STATEMENTS]
    return {
        "statements": len(statements),
        "transaction_control": len(bare) - len(statements),
        "record_table": sum(RECORD_TABLE in label for label in statements),
        "operation": sum(any(table in label for table in OPERATION_TABLES) for label in statements),
        "sequence": labels,
    }


def cell(results: dict[str, Any], rows: int, concurrency: int, variant: str) -> dict[str, Any]:
    for row in results["latencies"]:
        if (row["rows"], row["concurrency"], row["variant"]) == (rows, concurrency, variant):
            found: dict[str, Any] = row
            return found
    raise KeyError((rows, concurrency, variant))


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator else 0.0


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    plan = results["plan"]
    verdicts = []

    def verdict(target: str, measured: str, met: bool | None) -> None:
        state = "not measured" if met is None else ("met" if met else "MISSED")
        verdicts.append({"target": target, "measured": measured, "verdict": state})

    queries = {name: split(labels) for name, labels in results["stages"][0]["queries"].items()}
    added = queries["first"]["statements"] - queries["baseline"]["statements"]
    added_control = (
        queries["first"]["transaction_control"] - queries["baseline"]["transaction_control"]
    )
    verdict(
        "A new key adds at most 3 queries",
        f"{added} statements ({queries['first']['record_table']} on the record table) "
        f"+ {added_control} transaction-control",
        added <= 3,
    )
    replay = queries["replay"]
    replay_ran = any(
        "a replay ran the operation" in sample
        for row in results["samples"]
        for sample in row["error_samples"]
    )
    verdict(
        "A replay issues at most 2 queries and never runs the operation",
        f"{replay['record_table']} on the record table, {replay['statements']} in all "
        f"(with authentication), {replay['operation']} by the operation; "
        f"payments and charges unchanged by replay runs: {not replay_ran}",
        replay["record_table"] <= 2 and replay["operation"] == 0 and not replay_ran,
    )

    if 8 in plan["concurrency"]:
        ratios = [
            ratio(cell(results, rows, 8, "first")["throughput"],
                  cell(results, rows, 8, "baseline")["throughput"])
            for rows in plan["rows"]
        ]  # fmt: skip
        verdict(
            "First-request throughput >= 85% of the baseline's at concurrency 8",
            ", ".join(f"{value:.0%}" for value in ratios) + " (by table size)",
            min(ratios) >= 0.85,
        )
    else:
        verdict("First-request throughput >= 85% of the baseline's at concurrency 8", "-", None)

    ratios = [
        ratio(cell(results, rows, c, "replay")["throughput"],
              cell(results, rows, c, "baseline")["throughput"])
        for rows in plan["rows"]
        for c in plan["concurrency"]
    ]  # fmt: skip
    verdict(
        "Replay throughput >= 1.2x the baseline's",
        f"{min(ratios):.2f}x to {max(ratios):.2f}x (every table size and concurrency)",
        min(ratios) >= 1.2,
    )

    flat = flatness(results)
    judged = [row for row in flat if row["concurrency"] <= 8]
    worst = max(judged, key=lambda row: row["normalized"])
    stores = [stage["store"] for stage in results["stages"]]
    verdict(
        f"Latency flat from {plan['rows'][0]:,} to {plan['rows'][-1]:,} stored records",
        f"worst p50 change relative to the baseline {worst['normalized']:.2f}x "
        f"({worst['variant']}, c={worst['concurrency']}; raw {worst['raw']:.2f}x while the "
        f"baseline's moved {worst['baseline_drift']:.2f}x); tolerance {FLAT_TOLERANCE:.2f}x "
        "at concurrency 1 and 8. The store alone: new key p50 "
        f"{stores[0]['first_p50_ms']:.2f} -> {stores[-1]['first_p50_ms']:.2f} ms, replay "
        f"{stores[0]['replay_p50_ms']:.2f} -> {stores[-1]['replay_p50_ms']:.2f} ms",
        worst["normalized"] <= FLAT_TOLERANCE,
    )

    purge = results["purge"]
    if not purge.get("available"):
        verdict("Purge >= 50 000 records/s", "purge command not there yet", None)
        verdict("Purge holds no lock over 100 ms", "purge command not there yet", None)
    else:
        verdict(
            "Purge >= 50 000 records/s",
            f"{purge['records_per_second_batches']:,.0f}/s from its first transaction to its "
            f"last ({purge['deleted']:,} in {purge['batch_seconds']:.1f} s); "
            f"{purge['records_per_second']:,.0f}/s counting the command's start",
            purge["records_per_second_batches"] >= 50_000
            and purge["deleted"] == purge["expired"]
            and purge["live_after"] == purge["live"],
        )
        longest = purge["longest_transaction_ms_at_most"]
        verdict(
            "Purge holds no lock over 100 ms",
            f"longest transaction {purge['longest_transaction_ms_at_least']:.0f}-"
            f"{longest if longest is not None else float('nan'):.0f} ms, longest wait of a "
            f"request on a purged row {purge['probe_max_wait_ms']:.0f} ms; table locks "
            f"{', '.join(purge['table_locks']) or 'none seen'}",
            longest is not None
            and longest <= 100
            and purge["probe_max_wait_ms"] <= 100
            and set(purge["table_locks"]) <= {"RowExclusiveLock", "RowShareLock"},
        )
    return verdicts


def paired(results: dict[str, Any], rows: int, concurrency: int, variant: str) -> float:
    """Median over rounds of the variant's p50 / the baseline's p50 in the same round.

    The variants of a round run back to back, so the ratio cancels the machine's drift
    between rounds; the median drops a round that a burst of other work hit.
    """
    p50s: dict[tuple[str, int], float] = {
        (sample["variant"], sample["round"]): sample["p50_ms"]
        for sample in results["samples"]
        if (sample["rows"], sample["concurrency"]) == (rows, concurrency)
    }
    ratios = sorted(
        ratio(p50s[(variant, round_)], p50s[("baseline", round_)])
        for (name, round_) in p50s
        if name == variant
    )
    middle = len(ratios) // 2
    return ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2


def flatness(results: dict[str, Any]) -> list[dict[str, Any]]:
    plan = results["plan"]
    smallest, largest = plan["rows"][0], plan["rows"][-1]
    flat = []
    for concurrency in plan["concurrency"]:
        base_small = cell(results, smallest, concurrency, "baseline")["p50_ms"]
        base_large = cell(results, largest, concurrency, "baseline")["p50_ms"]
        for variant in ("first", "replay"):
            small = cell(results, smallest, concurrency, variant)["p50_ms"]
            large = cell(results, largest, concurrency, variant)["p50_ms"]
            flat.append(
                {
                    "variant": variant,
                    "concurrency": concurrency,
                    "p50_small_ms": small,
                    "p50_large_ms": large,
                    "raw": ratio(large, small),
                    "baseline_drift": ratio(base_large, base_small),
                    "normalized": ratio(
                        paired(results, largest, concurrency, variant),
                        paired(results, smallest, concurrency, variant),
                    ),
                }
            )
    return flat
