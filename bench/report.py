"""A run's results as Markdown."""

from __future__ import annotations

from typing import Any

from bench.targets import cell, flatness, ratio, split

VARIANT_LABELS = {
    "baseline": "baseline (plain DRF view, no mixin)",
    "first": "mixin, first request (new key)",
    "replay": "mixin, replay of a completed key",
}


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
