"""A small closed-loop HTTP/1.1 load generator, run in a process of its own.

``python -m bench.loadgen`` reads one run's spec as JSON on stdin and prints its result as JSON.
Each of ``concurrency`` connections sends its next request as soon as the previous answer is
read (keep-alive; it reconnects if the server closes). Every answer is checked (status, and the
``Idempotent-Replayed`` marker), so a wrong answer is an error, never a fast sample.

Why not wrk: the runs need a fresh ``Idempotency-Key`` per request or a pool of completed
keys, and a check of every answer; asyncio on raw sockets does that in ~100 lines of stdlib,
costs a few percent of a core at these rates (its CPU time is reported), and needs no package.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

REPLAYED = b"idempotent-replayed"
# The ping's answer names the gunicorn worker process that holds the connection (bench/urls.py).
WORKER_HEADER = "X-Bench-Worker"
PING = "/bench/ping"


@dataclass(frozen=True)
class Spec:
    host: str
    port: int
    path: str
    body: str
    headers: dict[str, str]
    concurrency: int
    duration: float  # seconds measured
    warmup: float  # seconds run first and discarded
    expect_status: int
    # "fresh": a new uuid4 key per request; "pool": cycle through pool_keys; "each": every key
    # of pool_keys once, shared out among the connections; "none": no key.
    key_mode: str = "none"
    pool_keys: list[str] = field(default_factory=list)
    expect_replayed: bool = False
    max_requests: int = 0  # stop after this many requests in all (0: run for the duration)
    # The server's worker processes: the connections are spread evenly over them (0: as the
    # kernel hands them out).
    workers: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Spec:
        return cls(**data)


@dataclass
class Tally:
    latencies_us: list[int] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    sent: int = 0
    completed_in_window: int = 0  # answers that arrived inside the measured window

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(message)


class Connection:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.spec.host, self.spec.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = await self._chunked()
        else:
            body = await self.reader.readexactly(int(headers.get(b"content-length", b"0")))
        if headers.get(b"connection", b"").lower() == b"close":
            await self.close()
        return status, headers, body

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


def build_request(spec: Spec, key: str | None) -> bytes:
    body = spec.body.encode()
    lines = [
        f"POST {spec.path} HTTP/1.1",
        f"Host: {spec.host}:{spec.port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in spec.headers.items()),
    ]
    if key is not None:
        lines.append(f"Idempotency-Key: {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def balanced(spec: Spec) -> tuple[list[Connection], dict[str, int]]:
    """``concurrency`` open keep-alive connections, at most ceil(concurrency / workers) on any
    worker process, and how many each worker holds.

    Which gunicorn worker accepts a connection is a race, and a connection stays with it: with
    most of them on one worker (one GIL, one core) the machine sat a third idle and throughput
    fell by a third, in some runs and not others. A connection on a crowded worker is closed and
    opened again until the spread is even (or the attempts run out: the spread is reported).
    """
    connections = [Connection(spec) for _ in range(spec.concurrency)]
    if spec.workers < 1:
        return connections, {}
    cap = -(-spec.concurrency // spec.workers)
    ping = f"GET {PING} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n\r\n".encode()
    header = WORKER_HEADER.lower().encode()

    async def worker_of(connection: Connection) -> str:
        _status, headers, _body = await connection.request(ping)
        return headers.get(header, b"?").decode()

    held = [await worker_of(connection) for connection in connections]
    for _attempt in range(50 * spec.concurrency):
        counts = {pid: held.count(pid) for pid in held}
        crowded = next((i for i, pid in enumerate(held) if counts[pid] > cap), None)
        if crowded is None:
            break
        await connections[crowded].close()
        held[crowded] = await worker_of(connections[crowded])
    return connections, {pid: held.count(pid) for pid in sorted(set(held))}


async def worker(
    spec: Spec,
    connection: Connection,
    index: int,
    tally: Tally,
    start: float,
    stop: float,
    each: Iterator[str],
) -> None:
    measured_from = start + spec.warmup
    whole_run = bool(spec.max_requests) or spec.key_mode == "each"
    position = index * 7919  # spread the connections over the pool
    try:
        while time.perf_counter() < stop:
            if spec.max_requests and tally.sent >= spec.max_requests:
                break
            tally.sent += 1
            if spec.key_mode == "fresh":
                key: str | None = str(uuid.uuid4())
            elif spec.key_mode == "pool":
                key = spec.pool_keys[position % len(spec.pool_keys)]
                position += 1
            elif spec.key_mode == "each":
                key = next(each, None)
                if key is None:
                    break
            else:
                key = None
            raw = build_request(spec, key)
            began = time.perf_counter()
            try:
                status, headers, body = await connection.request(raw)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                tally.error(f"{type(exc).__name__}: {exc}")
                await connection.close()
                await asyncio.sleep(0.01)
                continue
            ended = time.perf_counter()
            replayed = headers.get(REPLAYED) == b"true"
            if status != spec.expect_status or replayed != spec.expect_replayed:
                tally.error(f"{status} replayed={replayed} {body[:200]!r}")
            else:
                if began >= measured_from or whole_run:
                    tally.latencies_us.append(int((ended - began) * 1_000_000))
                if measured_from <= ended <= stop or whole_run:
                    tally.completed_in_window += 1
    finally:
        await connection.close()


async def run(spec: Spec) -> dict[str, Any]:
    tally = Tally()
    connections, spread = await balanced(spec)
    start = time.perf_counter()
    # "each" sends every key of the pool once, however long that takes.
    stop = float("inf") if spec.key_mode == "each" else start + spec.warmup + spec.duration
    each = iter(spec.pool_keys)
    workers = [
        worker(spec, connection, index, tally, start, stop, each)
        for index, connection in enumerate(connections)
    ]
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    whole_run = spec.max_requests or spec.key_mode == "each"
    measured = elapsed if whole_run else min(spec.duration, elapsed - spec.warmup)
    return {
        "requests": len(tally.latencies_us),
        "sent": tally.sent,
        "throughput": tally.completed_in_window / measured if measured > 0 else 0.0,
        "seconds": measured,
        "errors": tally.errors,
        "error_samples": tally.error_samples,
        "latencies_us": tally.latencies_us,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "connections_by_worker": spread,
    }


def main() -> None:
    spec = Spec.from_json(json.load(sys.stdin))
    json.dump(asyncio.run(run(spec)), sys.stdout)


if __name__ == "__main__":
    main()
