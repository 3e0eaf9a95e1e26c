"""The benchmark run: fresh database, gunicorn, rounds of alternating variants, the purge.

Every variant of a cell (rows x concurrency) runs once per round, in an order that rotates
from round to round and cell to cell, so that a burst of machine noise falls on all of them.
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
from bench.plan import BENCH_USER, BODY, FIRST, REPLAY, VARIANTS, Plan, Variant, rotation
from bench.probes import count_queries, operation_counts, store_latency
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


def loadgen(context: Context, variant: Variant, concurrency: int, **extra: Any) -> dict[str, Any]:
    spec = {
        "host": HOST,
        "port": context.port,
        "path": variant.path,
        "body": BODY,
        "headers": {"Authorization": f"Token {context.token}"},
        "concurrency": concurrency,
        "duration": context.plan.duration,
        "warmup": context.plan.warmup,
        "expect_status": 201,
        "key_mode": variant.key_mode,
        "expect_replayed": variant.replayed,
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


def seed_replay_pool(context: Context, stage: int) -> list[str]:
    """Complete ``replay_pool`` keys through the real endpoint; the replays reuse them."""
    keys = [f"replay-{stage}-{uuid.uuid4()}" for _ in range(context.plan.replay_pool)]
    seeded = loadgen(context, FIRST, 8, key_mode="each", pool_keys=keys)
    if seeded["errors"] or seeded["requests"] != len(keys):
        raise RuntimeError(f"seeding the replay pool failed: {seeded}")
    return keys


def run_stage(
    context: Context, stage_index: int, rows: int, samples: list[Sample]
) -> dict[str, Any]:
    plan = context.plan
    load_before = machine.load_average()
    pool = seed_replay_pool(context, stage_index)
    queries = count_queries(context.port, context.token, pool[0])
    store = store_latency(own_scope(), plan.store_probes)
    close_django_connections()
    for round_index in range(plan.rounds):
        for cell, concurrency in enumerate(plan.concurrency):
            for variant in rotation(VARIANTS, round_index + cell + stage_index):
                before = operation_counts() if variant is REPLAY else None
                close_django_connections()
                groups = {
                    "app": [context.server_pid, *cpu.children(context.server_pid)],
                    "db": database.backend_pids(context.url),
                }
                start = cpu.snapshot(groups)
                result = loadgen(context, variant, concurrency, pool_keys=pool)
                used = cpu.usage(start, cpu.snapshot(groups))
                if before is not None and operation_counts() != before:
                    result["errors"] += 1
                    result["error_samples"].append("a replay ran the operation")
                close_django_connections()
                sample = Sample(
                    rows=rows,
                    concurrency=concurrency,
                    variant=variant.name,
                    round=round_index,
                    throughput=result["throughput"],
                    requests=result["requests"],
                    errors=result["errors"],
                    error_samples=result["error_samples"],
                    loadgen_cpu_share=result["cpu_seconds"] / (plan.warmup + plan.duration),
                    cpu=per_request(used, result),
                    latencies_us=result["latencies_us"],
                )
                samples.append(sample)
                summary = sample.summary()
                context.log(
                    f"  rows={rows:>9} c={concurrency:>2} {variant.name:<8} "
                    f"{summary['throughput']:>7.1f} req/s  p50 {summary['p50_ms']:>6.2f} ms  "
                    f"p99 {summary['p99_ms']:>7.2f} ms  errors {summary['errors']}"
                )
    return {
        "rows": rows,
        "rows_at_end": database.count(context.url),
        "load_average_before": load_before,
        "queries": queries,
        "store": store,
    }


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
    context = Context(plan=plan, url=url, env=subprocess_env(url), log=log)
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
        for stage_index, rows in enumerate(plan.rows):
            if rows > filled:
                log(f"records: filling to {rows}")
                database.fill(url, filled + 1, rows, scope)
                filled = rows
            else:
                database.vacuum(url)
            stages.append(run_stage(context, stage_index, rows, samples))
    close_django_connections()
    purge = run_purge(context, scope, filled)
    return {
        "plan": plan.__dict__,
        "server": {"worker_class": "gthread", "workers": workers, "threads": threads},
        "machine": description,
        "load_average": {"start": load_start, "end": machine.load_average()},
        "seconds": round(time.monotonic() - started, 1),
        "stages": stages,
        "samples": [sample.summary() for sample in samples],
        "latencies": pooled(samples),
        "purge": purge,
    }
