"""The benchmark run: fresh database, gunicorn, rounds of alternating variants, the purge.

Every variant of a cell (operation x concurrency, at a stage's table size) runs once per round,
in an order that rotates from round to round and cell to cell, so that a burst of machine noise
falls on all of them.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import cpu, database, machine
from bench import purge as purge_bench
from bench.plan import (
    BENCH_USER,
    FLOOR_PAIR,
    OPERATIONS,
    SEEDED_BY,
    VARIANTS,
    Cell,
    Plan,
    Stage,
    Variant,
    path,
    rotation,
)
from bench.probes import count_queries, operation_state, store_latency
from bench.server import HOST, Gunicorn
from bench.stats import Sample, per_request, pooled

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Context:
    plan: Plan
    url: str
    env: dict[str, str]
    token: str = ""
    port: int = 0
    server_pid: int = 0
    workers: int = 0  # gunicorn's worker processes, over which each run spreads its connections
    log: Callable[[str], None] = print


def subprocess_env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DATABASE_URL": url,
        "GATEWAY_DATABASE_URL": url,
        "PYTHONPATH": str(ROOT),
    }


def prepare(context: Context) -> None:
    """Migrate, load the demo data and the benchmark user's token (this process: Django)."""
    import django
    from django.core.management import call_command

    os.environ.update(context.env)
    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    call_command("load_demo_data", stdout=io.StringIO())
    out = io.StringIO()
    call_command("issue_token", BENCH_USER, stdout=out)
    context.token = out.getvalue().strip()


def own_scope() -> str:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username=BENCH_USER)
    return f"{user._meta.label_lower}:{user.pk}"


def close_django_connections() -> None:
    from django.db import connections

    connections.close_all()


def loadgen(
    context: Context, operation: str, variant: Variant, concurrency: int, **extra: Any
) -> dict[str, Any]:
    spec = {
        "host": HOST,
        "port": context.port,
        "path": path(operation, variant.name),
        "body": OPERATIONS[operation].body,
        "headers": {"Authorization": f"Token {context.token}"},
        "concurrency": concurrency,
        "duration": context.plan.duration,
        "warmup": context.plan.warmup,
        "expect_status": 201,
        "key_mode": variant.key_mode,
        "expect_replayed": variant.replayed,
        "workers": context.workers,
        **extra,
    }
    completed = subprocess.run(
        [sys.executable, "-m", "bench.loadgen"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=context.env,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{completed.stderr}")
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


Pools = dict[tuple[str, str], list[str]]  # (operation, replay variant) -> completed keys


def seed_replay_pools(context: Context, stage_index: int, stage: Stage) -> Pools:
    """Complete ``replay_pool`` keys per replay variant through the path it replays."""
    pools: Pools = {}
    for cell in stage.cells:
        for name in cell.variants:
            if name not in SEEDED_BY or (cell.operation, name) in pools:
                continue
            keys = [
                f"replay-{stage_index}-{cell.operation}-{name}-{uuid.uuid4()}"
                for _ in range(context.plan.replay_pool)
            ]
            seeded = loadgen(
                context, cell.operation, SEEDED_BY[name], 8, key_mode="each", pool_keys=keys
            )
            if seeded["errors"] or seeded["requests"] != len(keys):
                raise RuntimeError(f"seeding {cell.operation} {name} failed: {seeded}")
            pools[(cell.operation, name)] = keys
    return pools


def run_stage(
    context: Context, stage_index: int, stage: Stage, samples: list[Sample]
) -> dict[str, Any]:
    plan = context.plan
    load_before = machine.load_average()
    pools = seed_replay_pools(context, stage_index, stage)
    queries = {
        operation: count_queries(context.port, context.token, operation, pools)
        for operation in dict.fromkeys(cell.operation for cell in stage.cells)
    }
    store = store_latency(own_scope(), plan.store_probes)
    close_django_connections()
    for round_index in range(plan.rounds):
        for cell_index, cell in enumerate(stage.cells):
            shift = round_index + cell_index + stage_index
            for name in rotation(cell.variants, shift):
                samples.append(measure(context, stage.rows, cell, name, round_index, pools))
    # The floor and the first request alone, back to back, in turns: each round's pair saw the
    # same machine, and the pair's ratio is what issue 11 judges.
    paired = [cell for cell in stage.cells if set(FLOOR_PAIR) <= set(cell.variants)]
    for round_index in range(plan.rounds, plan.rounds + plan.pair_rounds):
        for cell_index, cell in enumerate(paired):
            for name in rotation(FLOOR_PAIR, round_index + cell_index + stage_index):
                samples.append(measure(context, stage.rows, cell, name, round_index, pools))
    return {
        "rows": stage.rows,
        "rows_at_end": database.count(context.url),
        "load_average_before": load_before,
        "queries": queries,
        "store": store,
    }


def measure(
    context: Context, rows: int, cell: Cell, name: str, round_index: int, pools: Pools
) -> Sample:
    """One run of one variant, its CPU by process group, and (replays) the operation's state."""
    variant = VARIANTS[name]
    before = operation_state(cell.operation) if variant.replayed else None
    close_django_connections()
    groups = {
        "app": [context.server_pid, *cpu.children(context.server_pid)],
        "db": database.backend_pids(context.url),
    }
    start = cpu.snapshot(groups)
    result = loadgen(
        context,
        cell.operation,
        variant,
        cell.concurrency,
        pool_keys=pools.get((cell.operation, name), []),
    )
    used = cpu.usage(start, cpu.snapshot(groups))
    if before is not None and operation_state(cell.operation) != before:
        result["errors"] += 1
        result["error_samples"].append("a replay ran the operation")
    close_django_connections()
    plan = context.plan
    sample = Sample(
        operation=cell.operation,
        rows=rows,
        concurrency=cell.concurrency,
        variant=name,
        round=round_index,
        throughput=result["throughput"],
        requests=result["requests"],
        errors=result["errors"],
        error_samples=result["error_samples"],
        loadgen_cpu_share=result["cpu_seconds"] / (plan.warmup + plan.duration),
        cpu=per_request(used, result),
        latencies_us=result["latencies_us"],
        connections_by_worker=result.get("connections_by_worker", {}),
    )
    summary = sample.summary()
    cpu_used = summary["cpu_ms_per_request"]
    context.log(
        f"  rows={rows:>9} {cell.operation:<8} c={cell.concurrency:>2} {name:<12} "
        f"{summary['throughput']:>7.1f} req/s  p50 {summary['p50_ms']:>6.2f} ms  "
        f"p99 {summary['p99_ms']:>7.2f} ms  cpu {cpu_used['app']:.2f}+{cpu_used['db']:.2f} ms  "
        f"errors {summary['errors']}"
    )
    return sample


def run_purge(context: Context, scope: str, filled: int) -> dict[str, Any]:
    """Add expired records numbered after the ``filled`` live ones, and purge them."""
    plan = context.plan
    if not purge_bench.command_available(ROOT):
        return {"available": False}
    first = filled + 1
    database.fill(context.url, first, first + plan.purge_expired - 1, scope, expired=True)
    live = database.count(context.url, "expires_at > now()")
    expired = database.count(context.url, "expires_at <= now()")
    context.log(f"purge: {expired} expired records beside {live} live ones")
    load_before = machine.load_average()
    result = purge_bench.measure(ROOT, context.url, context.env, expired, live)
    result.live_after = database.count(context.url, "expires_at > now()")
    return {"available": True, "load_average_before": load_before, **result.as_dict()}


def execute(
    plan: Plan, url: str, workers: int, threads: int, log: Callable[[str], None]
) -> dict[str, Any]:
    started = time.monotonic()
    context = Context(plan=plan, url=url, env=subprocess_env(url), workers=workers, log=log)
    load_start = machine.load_average()
    log(f"database: recreating {database.parts(url)['dbname']}")
    database.recreate(url)
    prepare(context)
    scope = own_scope()
    description = machine.describe(ROOT, database.server_version(url))
    samples: list[Sample] = []
    stages = []
    filled = 0
    server_log = ROOT / "bench" / "results" / "gunicorn.log.tmp"
    with Gunicorn(ROOT, context.env, workers, threads, server_log) as server:
        context.port = server.port
        assert server.process is not None
        context.server_pid = server.process.pid
        log(f"gunicorn: {workers} gthread workers x {threads} threads on {HOST}:{server.port}")
        for stage_index, stage in enumerate(plan.stages):
            if stage.rows > filled:
                log(f"records: filling to {stage.rows}")
                database.fill(url, filled + 1, stage.rows, scope)
                filled = stage.rows
            else:
                database.vacuum(url)
            stages.append(run_stage(context, stage_index, stage, samples))
    close_django_connections()
    purge = run_purge(context, scope, filled)
    return {
        "plan": plan.as_dict(),
        "server": {"worker_class": "gthread", "workers": workers, "threads": threads},
        "machine": description,
        "load_average": {"start": load_start, "end": machine.load_average()},
        "seconds": round(time.monotonic() - started, 1),
        "stages": stages,
        "samples": [sample.summary() for sample in samples],
        "latencies": pooled(samples),
        "purge": purge,
    }
