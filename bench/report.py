"""A run's results as Markdown."""

from __future__ import annotations

from typing import Any

from bench.plan import OPERATIONS
from bench.targets import (
    cell,
    cpu_ms,
    find,
    flatness,
    queries_by_operation,
    ratio,
    row_operation,
    split,
)

VARIANT_LABELS = {
    "baseline": "baseline: the plain view, no idempotency",
    "floor": "floor: the minimal protocol by hand, new key",
    "first": "first: IdempotentMixin, new key",
    "replay": "replay: IdempotentMixin, completed key",
    "floor-replay": "floor-replay: the floor, completed key",
}
# Which variant each is compared with in the "vs floor" column.
FLOOR_OF = {
    "floor": "floor",
    "first": "floor",
    "replay": "floor-replay",
    "floor-replay": "floor-replay",
}


def order(row: dict[str, Any]) -> tuple[int, int, int, int]:
    operations = list(OPERATIONS)
    operation = row_operation(row)
    return (
        operations.index(operation) if operation in operations else len(operations),
        row["rows"],
        row["concurrency"],
        list(VARIANT_LABELS).index(row["variant"]),
    )


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
        f"{fmt_load(load['end'])} at the end. The load average counts the benchmark's own "
        "processes (gunicorn threads, PostgreSQL backends, the load generator); the line below "
        "measures what everything else took.",
        "",
        other_load_line(results),
        *(["", f"Note: {results['note']}"] if results.get("note") else []),
        "",
        "Three operations, served by gunicorn "
        f"({server['workers']} gthread workers x {server['threads']} threads) on PostgreSQL, "
        "driven over loopback by `bench/loadgen.py` in another process (keep-alive "
        "connections, closed loop):",
        "",
        *(f"- **{operation.name}**: {operation.description}." for operation in OPERATIONS.values()),
        "",
        "Each in up to five variants: " + "; ".join(VARIANT_LABELS.values()) + ". The floor "
        "(`bench/floor/protocol.py`) is what any correct layer must pay: one autocommitted "
        "INSERT that reserves the key (and a read of the row when the key is taken), then one "
        "transaction holding the operation, the rendering and the fenced completion.",
        "",
        f"{plan['rounds']} round(s) of {plan['duration']} s (after {plan['warmup']} s of "
        "warm-up) per variant and cell, the variants alternating"
        + (
            f", then {plan['pair_rounds']} round(s) of the floor and the first request alone, "
            "back to back"
            if plan.get("pair_rounds")
            else ""
        )
        + ". Throughput is the median over rounds; p50 and p99 pool every request of the "
        "rounds. The first request is judged against the floor by the median, over the rounds "
        "that ran both, of the ratio of their throughputs in the same round: the pair saw the "
        "same machine. CPU per request is the stable number on a busy machine; throughput is "
        "not.",
        "",
        "## Targets",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        *(f"| {v['target']} | {v['measured']} | {v['verdict']} |" for v in results["targets"]),
        "",
        "## Side by side at concurrency 8",
        "",
        "vs floor: a new key against the floor's new key, a replay against the floor's replay. "
        "CPU added: app + db per request over the baseline's.",
        "",
    ]
    lines += side_by_side(results)
    lines += [
        "## Queries per request (counted by `bench.middleware`, one request per path)",
        "",
        "| operation | variant | statements | BEGIN/COMMIT/SAVEPOINT | on the record table "
        "| by the operation | sequence |",
        "|---|---|---|---|---|---|---|",
    ]
    for operation, by_variant in queries_by_operation(results["stages"][0]).items():
        for name, labels in by_variant.items():
            counted = split(labels)
            lines.append(
                f"| {operation} | {name} | {counted['statements']} | "
                f"{counted['transaction_control']} | {counted['record_table']} | "
                f"{counted['operation']} | {'; '.join(labels)} |"
            )
    lines += [
        "",
        "## Latency and throughput, every cell",
        "",
        "| operation | stored records | concurrency | variant | req/s | vs baseline | p50 ms "
        "| p99 ms | p50 vs baseline | CPU ms/request: app / db | other load (cores) "
        "| requests | errors |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in sorted(results["latencies"], key=order):
        base = cell(results, row["rows"], row["concurrency"], "baseline", row_operation(row))
        lines.append(
            f"| {row_operation(row)} | {row['rows']:,} | {row['concurrency']} | "
            f"{row['variant']} | {row['throughput']:.0f} | "
            f"{ratio(row['throughput'], base['throughput']):.2f} | "
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
        "Judged: first and replay at concurrency 1 and 8 (the floor's rows for reference).",
        "",
        "| operation | variant | concurrency | stored records | p50 ms (small) | p50 ms (large) "
        "| change | baseline's change | change relative to the baseline, paired by round |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
        *(
            f"| {row['operation']} | {row['variant']} | {row['concurrency']} | "
            f"{row['rows_small']:,} -> {row['rows_large']:,} | {row['p50_small_ms']:.2f} | "
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


def side_by_side(results: dict[str, Any]) -> list[str]:
    """Per operation and table size, every variant at concurrency 8 against baseline and floor."""
    lines = []
    rows = sorted((row for row in results["latencies"] if row["concurrency"] == 8), key=order)
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row_operation(row), row["rows"]), []).append(row)
    for (operation, stored), group in groups.items():
        base = cell(results, stored, 8, "baseline", operation)
        lines += [
            f"**{operation}**, {stored:,} stored records:",
            "",
            "| variant | req/s | vs baseline | vs floor | p50 ms | p99 ms | p99 vs baseline "
            "| CPU ms app | CPU ms db | CPU added ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in group:
            floor = FLOOR_OF.get(row["variant"])
            reference = find(results, operation, stored, 8, floor) if floor else None
            versus = (
                f"{ratio(row['throughput'], reference['throughput']):.2f}"
                if reference is not None
                else "-"
            )
            used = row["cpu_ms_per_request"]
            lines.append(
                f"| {row['variant']} | {row['throughput']:.0f} | "
                f"{ratio(row['throughput'], base['throughput']):.2f} | {versus} | "
                f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
                f"{ratio(row['p99_ms'], base['p99_ms']):.2f} | {used['app']:.2f} | "
                f"{used['db']:.2f} | {cpu_ms(row) - cpu_ms(base):+.2f} |"
            )
        lines.append("")
    return lines


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
