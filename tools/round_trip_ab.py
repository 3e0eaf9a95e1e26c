"""What the completion's own COMMIT costs: the floor in one round trip against two, one run.

On PostgreSQL the library's completion commits the operation's transaction in the same round
trip (docs/databases.md); the floor does the same. This runs, in alternating rounds under
gunicorn as ``bin/bench`` does, each operation's baseline, its floor (one round trip), the
floor that completes and then commits (two: ``/bench/floor-two-trips/...``) and the mixin's
first request, optionally with every database round trip stretched by a delaying TCP proxy (a
database across a network; loopback hides what a round trip costs)::

    python tools/round_trip_ab.py                      # hot row and note, 8 rounds, loopback
    python tools/round_trip_ab.py --delay 0.0005       # through a proxy delaying each way
    python tools/round_trip_ab.py --delay 0 --rounds 12  # the proxy alone

It prints, per operation and variant, the median over rounds of throughput and p99 over the
baseline's in the same round. The proxy's event loop wakes in whole milliseconds, so any delay
above zero is about 1 ms each way; the tool measures and prints the round trip it gives.
Needs PostgreSQL on 127.0.0.1:5432 (it recreates ``bench_round_trips``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = ("baseline", "floor", "two-trips", "first")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            if data is None:
                writer.close()
                return
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((time.monotonic() + delay, data))
    finally:
        queue.put_nowait((0.0, None))
        await sender


async def _proxy(listen: int, target: int, delay: float) -> None:
    async def handle(
        client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(
            _pipe(client_reader, writer, delay),
            _pipe(reader, client_writer, delay),
            return_exceptions=True,
        )

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


def round_trip_ms(port: int) -> float:
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres") as conn:
        conn.execute("SELECT 1")
        started = time.perf_counter()
        for _ in range(200):
            conn.execute("SELECT 1").fetchone()
        return (time.perf_counter() - started) / 200 * 1000


def measure(port: int, rounds: int, operations: list[str]) -> None:
    from bench import plan as plans

    # Imported by name: mypy's Django plugin, reaching bench.run from this script, loses the
    # managers of bench's models (a false error in bench/probes.py).
    execute = importlib.import_module("bench.run").execute
    # The two-round-trip floor as a variant of its own, with the floor's keys (fresh each).
    plans.VARIANTS["two-trips"] = plans.Variant("two-trips", "two-trips", "fresh", False)
    for name in operations:
        operation = plans.OPERATIONS[name]
        two_trips = operation.paths["floor"].replace("/bench/floor/", "/bench/floor-two-trips/")
        operation.paths["two-trips"] = two_trips
    plan = plans.Plan(
        "round-trips",
        (plans.Stage(0, tuple(plans.Cell(name, 8, VARIANTS) for name in operations)),),
        rounds,
        0.2,
        1.0,
        50,
        1000,
        10,
    )
    url = f"postgres://postgres@127.0.0.1:{port}/bench_round_trips"
    results = execute(plan, url, 3, 2, log=lambda line: print(line, file=sys.stderr))
    by_round: dict[tuple[str, int], dict[str, dict[str, float]]] = {}
    for sample in results["samples"]:
        by_round.setdefault((sample["operation"], sample["round"]), {})[sample["variant"]] = sample
    errors = sum(sample["errors"] for sample in results["samples"])
    print(f"{len(results['samples'])} runs, {errors} errors")
    print("operation  variant      throughput/baseline  p99/baseline  (medians over rounds)")
    for name in operations:
        cells = [cell for (operation, _), cell in by_round.items() if operation == name]
        for variant in VARIANTS[1:]:
            throughput = statistics.median(
                cell[variant]["throughput"] / cell["baseline"]["throughput"] for cell in cells
            )
            p99 = statistics.median(
                cell[variant]["p99_ms"] / cell["baseline"]["p99_ms"] for cell in cells
            )
            print(f"{name:10} {variant:12} {throughput:19.2f} {p99:13.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=float, help="seconds each way, through a proxy")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--operations", default="hot-row,note")
    parser.add_argument("--proxy", nargs=3, help=argparse.SUPPRESS)  # listen target delay
    options = parser.parse_args()
    if options.proxy:
        listen, target, delay = options.proxy
        asyncio.run(_proxy(int(listen), int(target), float(delay)))
        return
    port, proxy = 5432, None
    if options.delay is not None:
        port = 5433
        command = [sys.executable, __file__, "--proxy", str(port), "5432", str(options.delay)]
        proxy = subprocess.Popen(command)
        time.sleep(1)
    try:
        print(f"database round trip: {round_trip_ms(port):.2f} ms (port {port})")
        measure(port, options.rounds, options.operations.split(","))
    finally:
        if proxy is not None:
            proxy.terminate()


if __name__ == "__main__":
    main()
