"""Checks and probes beside the load: SQL per request, the store alone, replays' side effects."""

from __future__ import annotations

import http.client
import json
import time
import uuid

from bench.middleware import COUNT_HEADER, RESULT_HEADER
from bench.plan import NOTE, OPERATIONS, PAYMENT, SEEDED_BY, VARIANTS, path
from bench.server import HOST
from bench.stats import percentile_ms


def operation_state(operation: str) -> tuple[int, ...]:
    """What the operation changes (rows it adds, the counter it moves): a replay changes none."""
    from bench.floor.models import HOT_ROW_ID, Counter, Note
    from gateway.models import Charge
    from payments.models import Payment

    if operation == PAYMENT.name:
        return Payment.objects.count(), Charge.objects.using("gateway").count()
    if operation == NOTE.name:
        return (Note.objects.count(),)
    return (Counter.objects.get(pk=HOT_ROW_ID).value,)


def count_queries(
    port: int, token: str, operation: str, pools: dict[tuple[str, str], list[str]]
) -> dict[str, list[str]]:
    """Send one request per variant of ``operation`` with ``X-Bench-Count: 1``; read its SQL.

    The replay variants reuse a key of their pool (when the stage seeded one).
    """
    counted = {}
    for name in VARIANTS:
        if name in SEEDED_BY:
            pool = pools.get((operation, name))
            if not pool:
                continue
            key = pool[0]
        else:
            key = str(uuid.uuid4())
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        connection.request(
            "POST",
            path(operation, name),
            body=OPERATIONS[operation].body,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Token {token}",
                "Idempotency-Key": key,
                COUNT_HEADER: "1",
            },
        )
        response = connection.getresponse()
        response.read()
        connection.close()
        if response.status != 201:
            raise RuntimeError(f"counting {operation} {name}: status {response.status}")
        counted[name] = json.loads(response.getheader(RESULT_HEADER) or "[]")
    return counted


def store_latency(scope: str, probes: int) -> dict[str, float]:
    """The library's own statements as the table grows, without HTTP: ``RecordStore`` in this
    process, on the record table, for a new key (reserve, complete) and for its replay."""
    from datetime import timedelta

    from idempotency.store import RecordStore, Replay, Reserved, StoredResponse

    store = RecordStore()
    outcome = StoredResponse(201, [("Content-Type", "application/json")], PAYMENT.body.encode() * 2)
    first: list[int] = []
    replay: list[int] = []
    lease, expiry = timedelta(seconds=60), timedelta(hours=24)

    def reserve(key: str) -> object:
        return store.reserve(
            scope=scope,
            key=key,
            fingerprint="bench-store-probe",
            method="POST",
            path=PAYMENT.paths["mixin"],
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
