"""The benchmark run: fresh database, gunicorn, rounds of alternating variants, the purge.

Every variant of a cell (rows x concurrency) runs once per round, in an order that rotates
from round to round and cell to cell, so that a burst of machine noise falls on all of them.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import cpu, database, machine
from bench import purge as purge_bench
from bench.middleware import COUNT_HEADER, RESULT_HEADER
from bench.server import HOST, Gunicorn

ROOT = Path(__file__).resolve().parent.parent
PAYMENTS_PATH = "/payments"
BASELINE_PATH = "/bench/baseline/payments"  # bench/urls.py
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
    label: str
    path: str
    key_mode: str
    replayed: bool


BASELINE = Variant("baseline", "plain DRF view, no mixin", BASELINE_PATH, "fresh", False)
FIRST = Variant("first", "mixin, first request (new key)", PAYMENTS_PATH, "fresh", False)
REPLAY = Variant("replay", "mixin, replay of a completed key", PAYMENTS_PATH, "pool", True)
VARIANTS = (BASELINE, FIRST, REPLAY)


@dataclass
class Sample:
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

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_us)
        return {
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
        }


def percentile_ms(ordered: list[int], percent: float) -> float:
    """Nearest-rank percentile of sorted microseconds, in milliseconds."""
    if not ordered:
        return 0.0
    rank = max(1, -(-len(ordered) * percent // 100))
    return round(ordered[int(rank) - 1] / 1000, 2)


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


def operation_counts() -> tuple[int, int]:
    """(payments, gateway charges): a replay must change neither."""
    from gateway.models import Charge
    from payments.models import Payment

    return Payment.objects.count(), Charge.objects.using("gateway").count()


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


def seed_replay_pool(context: Context, stage: int) -> list[str]:
    """Complete ``replay_pool`` keys through the real endpoint; the replays reuse them."""
    keys = [f"replay-{stage}-{uuid.uuid4()}" for _ in range(context.plan.replay_pool)]
    seeded = loadgen(context, FIRST, 8, key_mode="each", pool_keys=keys)
    if seeded["errors"] or seeded["requests"] != len(keys):
        raise RuntimeError(f"seeding the replay pool failed: {seeded}")
    return keys


def count_queries(context: Context, replay_key: str) -> dict[str, list[str]]:
    """Send one request per path with ``X-Bench-Count: 1`` and read back its SQL."""
    paths = {
        "baseline": (BASELINE_PATH, str(uuid.uuid4())),
        "first": (PAYMENTS_PATH, str(uuid.uuid4())),
        "replay": (PAYMENTS_PATH, replay_key),
    }
    counted = {}
    for name, (path, key) in paths.items():
        connection = http.client.HTTPConnection(HOST, context.port, timeout=30)
        connection.request(
            "POST",
            path,
            body=BODY,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Token {context.token}",
                "Idempotency-Key": key,
                COUNT_HEADER: "1",
            },
        )
        response = connection.getresponse()
        response.read()
        connection.close()
        if response.status != 201:
            raise RuntimeError(f"counting {name}: status {response.status}")
        counted[name] = json.loads(response.getheader(RESULT_HEADER) or "[]")
    return counted


def rotation(items: tuple[Variant, ...], shift: int) -> list[Variant]:
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def run_stage(
    context: Context, stage_index: int, rows: int, samples: list[Sample]
) -> dict[str, Any]:
    plan = context.plan
    load_before = machine.load_average()
    pool = seed_replay_pool(context, stage_index)
    queries = count_queries(context, pool[0])
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


def store_latency(scope: str, probes: int) -> dict[str, float]:
    """The library's own statements as the table grows, without HTTP: ``RecordStore`` in this
    process, on the record table, for a new key (reserve, complete) and for its replay."""
    from datetime import timedelta

    from idempotency.store import RecordStore, Replay, Reserved, StoredResponse

    store = RecordStore()
    outcome = StoredResponse(201, [("Content-Type", "application/json")], BODY.encode() * 2)
    first: list[int] = []
    replay: list[int] = []
    lease, expiry = timedelta(seconds=60), timedelta(hours=24)

    def reserve(key: str) -> object:
        return store.reserve(
            scope=scope,
            key=key,
            fingerprint="bench-store-probe",
            method="POST",
            path=PAYMENTS_PATH,
            lease=lease,
            expiry=expiry,
        )

    for _ in range(probes):
        key = str(uuid.uuid4())
        began = time.perf_counter()
        reservation = reserve(key)
        assert isinstance(reservation, Reserved)
        with store.atomic():
            store.complete(reservation, outcome)
        reserved = time.perf_counter()
        assert isinstance(reserve(key), Replay)
        ended = time.perf_counter()
        first.append(int((reserved - began) * 1_000_000))
        replay.append(int((ended - reserved) * 1_000_000))
    first.sort()
    replay.sort()
    return {
        "probes": probes,
        "first_p50_ms": percentile_ms(first, 50),
        "first_p99_ms": percentile_ms(first, 99),
        "replay_p50_ms": percentile_ms(replay, 50),
        "replay_p99_ms": percentile_ms(replay, 99),
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


def pooled(samples: list[Sample]) -> list[dict[str, Any]]:
    """One row per (rows, concurrency, variant): latencies pooled over the rounds."""
    cells: dict[tuple[int, int, str], list[Sample]] = {}
    for sample in samples:
        cells.setdefault((sample.rows, sample.concurrency, sample.variant), []).append(sample)
    rows = []
    for (stored, concurrency, variant), group in cells.items():
        ordered = sorted(latency for sample in group for latency in sample.latencies_us)
        throughputs = sorted(sample.throughput for sample in group)
        rows.append(
            {
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
