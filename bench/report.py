"""Targets of issue 5, judged on a run's results, and the results as Markdown."""

from __future__ import annotations

from typing import Any

from bench.database import RECORD_TABLE

STATEMENTS = {"SELECT", "INSERT", "UPDATE", "DELETE"}
OPERATION_TABLES = ("payments_", "gateway_")
VARIANT_LABELS = {
    "baseline": "baseline (plain DRF view, no mixin)",
    "first": "mixin, first request (new key)",
    "replay": "mixin, replay of a completed key",
}
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


def markdown(results: dict[str, Any]) -> str:
    plan, host, server = results["plan"], results["machine"], results["server"]
    load = results["load_average"]
    lines = [
        f"# Benchmark results ({plan['name']} run)",
        "",
        f"Taken {host['date']} on {host['cpu']}, {host['cores']} cores, "
        f"{host['memory_gib']} GiB RAM, {host['os']}; Python {host['python']}, "
        f"Django {host['django']}, DRF {host['djangorestframework']}, "
        f"PostgreSQL {host['postgresql']}, psycopg {host['psycopg']}, "
        f"gunicorn {host['gunicorn']}; commit {host['commit']}"
        f"{' with uncommitted changes' if host['worktree_changes'] else ''}.",
        "",
        f"Load average (1, 5, 15 min): {fmt_load(load['start'])} at the start, "
        f"{fmt_load(load['end'])} at the end ({host['cores']} cores: a load above "
        f"{host['cores']} means other work shared the CPUs with the benchmark).",
        "",
        other_load_line(results),
        *(["", f"Note: {results['note']}"] if results.get("note") else []),
        "",
        f"`POST /payments` through the simulated gateway, served by gunicorn "
        f"({server['workers']} gthread workers x {server['threads']} threads) on PostgreSQL, "
        f"driven over loopback by `bench/loadgen.py` in another process (keep-alive "
        f"connections, closed loop). {plan['rounds']} round(s) of {plan['duration']} s "
        f"(after {plan['warmup']} s of warm-up) per variant and cell, the variants alternating. "
        "Throughput is the median over rounds; p50 and p99 pool every request of the rounds.",
        "",
        "## Targets",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        *(f"| {v['target']} | {v['measured']} | {v['verdict']} |" for v in results["targets"]),
        "",
        "## Queries per request (counted by `bench.middleware`, one request per path)",
        "",
        "| path | statements | BEGIN/COMMIT/SAVEPOINT | on the record table | by the operation "
        "| sequence |",
        "|---|---|---|---|---|---|",
    ]
    for name, labels in results["stages"][0]["queries"].items():
        counted = split(labels)
        lines.append(
            f"| {VARIANT_LABELS[name]} | {counted['statements']} | "
            f"{counted['transaction_control']} | {counted['record_table']} | "
            f"{counted['operation']} | {'; '.join(labels)} |"
        )
    lines += [
        "",
        "## Latency and throughput",
        "",
        "| stored records | concurrency | variant | req/s | vs baseline | p50 ms | p99 ms "
        "| p50 vs baseline | CPU ms/request: app / db | other load (cores) | requests | errors |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in sorted(
        results["latencies"],
        key=lambda r: (r["rows"], r["concurrency"], list(VARIANT_LABELS).index(r["variant"])),
    ):
        base = cell(results, row["rows"], row["concurrency"], "baseline")
        lines.append(
            f"| {row['rows']:,} | {row['concurrency']} | {row['variant']} | "
            f"{row['throughput']:.0f} | {ratio(row['throughput'], base['throughput']):.2f} | "
            f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
            f"{ratio(row['p50_ms'], base['p50_ms']):.2f} | "
            f"{row['cpu_ms_per_request']['app']:.2f} / {row['cpu_ms_per_request']['db']:.2f} | "
            f"{row['cpu_ms_per_request']['other_cores']:.2f} | "
            f"{row['requests']} | {row['errors']} |"
        )
    lines += [
        "",
        f"## Latency as the record table grows ({plan['rows'][0]:,} -> {plan['rows'][-1]:,})",
        "",
        "| variant | concurrency | p50 ms (small) | p50 ms (large) | change | baseline's change "
        "| change relative to the baseline, paired by round |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {row['variant']} | {row['concurrency']} | {row['p50_small_ms']:.2f} | "
            f"{row['p50_large_ms']:.2f} | {row['raw']:.2f}x | {row['baseline_drift']:.2f}x | "
            f"{row['normalized']:.2f}x |"
            for row in flatness(results)
        ),
        "",
        "The library's statements alone, timed through `RecordStore` in the harness's process "
        "(no HTTP, no gunicorn; one new key reserved and completed, then replayed):",
        "",
        "| stored records | new key p50 ms | new key p99 ms | replay p50 ms | replay p99 ms |",
        "|---:|---:|---:|---:|---:|",
        *(
            f"| {stage['rows']:,} | {stage['store']['first_p50_ms']:.2f} | "
            f"{stage['store']['first_p99_ms']:.2f} | {stage['store']['replay_p50_ms']:.2f} | "
            f"{stage['store']['replay_p99_ms']:.2f} |"
            for stage in results["stages"]
        ),
        "",
        "Records actually stored at each stage (the runs add their own): "
        + ", ".join(
            f"{stage['rows']:,} -> {stage['rows_at_end']:,} "
            f"(load {fmt_load(stage['load_average_before'])})"
            for stage in results["stages"]
        )
        + ".",
        "",
    ]
    lines += purge_lines(results["purge"])
    lines += [
        "",
        "CPU ms/request: user + system time of the gunicorn processes (app) and of their "
        "PostgreSQL backends (db), per request sent, from /proc. Other load: CPU used "
        "meanwhile by everything else on the machine (other users' work, PostgreSQL's WAL "
        "writer, this harness), in cores, averaged over the run.",
        "",
        "Load generator CPU: at most "
        f"{max(row['loadgen_cpu_share'] for row in results['latencies']):.0%} of one core "
        "during a run. Whole run: "
        f"{results['seconds']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def purge_lines(purge: dict[str, Any]) -> list[str]:
    lines = ["## Purge (`manage.py purge_idempotency_records`, default options)", ""]
    if not purge.get("available"):
        return [*lines, "Not measured: the purge command is not in this tree yet."]
    longest = purge["longest_transaction_ms_at_most"]
    return [
        *lines,
        "| expired | live beside them | deleted | live kept | seconds | records/s "
        "| longest transaction (ms) | longest wait of a request (ms) | table locks |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {purge['expired']:,} | {purge['live']:,} | {purge['deleted']:,} | "
        f"{purge['live_after']:,} | {purge['seconds']:.1f} | "
        f"{purge['records_per_second']:,.0f} | "
        f"{purge['longest_transaction_ms_at_least']:.0f} to "
        f"{longest if longest is not None else float('nan'):.0f} | "
        f"{purge['probe_max_wait_ms']:.1f} (p99 {purge['probe_p99_wait_ms']:.1f}, "
        f"{purge['probes']} probes) | {', '.join(purge['table_locks']) or 'none seen'} |",
        "",
        f"Seconds include the command's start (Django setup); from its first to its last "
        f"transaction it ran {purge['batch_seconds']:.1f} s "
        f"({purge['records_per_second_batches']:,.0f} records/s) in "
        f"{purge['transactions_seen']:,} transactions "
        f"(median {purge['transaction_ms_p50']:.0f} ms, "
        f"p99 {purge['transaction_ms_p99']:.0f} ms) seen by a sampler polling "
        f"`pg_stat_activity` every {purge['sample_interval_ms']:.1f} ms (a row lock lives no "
        "longer than its transaction). Load average before: "
        f"{fmt_load(purge['load_average_before'])}. Output: `{purge['output']}`",
    ]


def other_load_line(results: dict[str, Any]) -> str:
    """How much CPU everything else took while the load generator ran, from /proc/stat."""
    others = sorted(sample["cpu_ms_per_request"]["other_cores"] for sample in results["samples"])
    cores = results["machine"]["cores"]
    return (
        f"CPU taken by other processes during the measured runs (other users' work, PostgreSQL's "
        f"background writers, this harness): median {others[len(others) // 2]:.2f} of {cores} "
        f"cores, at most {others[-1]:.2f}."
    )


def fmt_load(values: list[float]) -> str:
    return " / ".join(f"{value:.2f}" for value in values)
