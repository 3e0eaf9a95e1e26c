"""The library's own Python time per request, on the demo's payment and the bench's note.

Drives the demo through Django's test client (bench settings: DEBUG off, persistent connections)
and measures this process's CPU time per request for these paths:

- ``baseline``: the same viewset without the mixin (``/bench/baseline/payments``);
- ``new``: the demo's ``PaymentViewSet`` (``/bench/idempotent/payments``), a fresh key each time;
- ``replay``: the same with keys already completed;
- ``floor``, ``floor-replay``: the same payment protected by the floor (the minimal protocol by
  hand, ``bench/floor/protocol.py``), a new key and a completed one;
- ``note-baseline``, ``note-new``, ``note-replay``, ``note-floor``, ``note-floor-replay``: the
  same for the bench's note (token authentication and one INSERT, the cheapest real operation:
  ``bench/floor/views.py``).

Modes::

    python tools/profile_requests.py measure            # ms per request, this checkout
    python tools/profile_requests.py profile new        # cProfile of one path, top functions
    python tools/profile_requests.py compare OTHER_TREE  # both checkouts, rounds interleaved
    python tools/profile_requests.py run PATH N         # N requests, for count_instructions.py

``compare`` runs ``measure`` in subprocesses, alternating this checkout and ``OTHER_TREE`` (a
copy of another commit, e.g. ``git archive main | tar -x -C /tmp/before``), and prints the
median of each path with the ratio. Set ``DATABASE_URL`` (PostgreSQL) as for the bench.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any

PATHS = (
    "baseline",
    "floor",
    "new",
    "replay",
    "floor-replay",
    "note-baseline",
    "note-floor",
    "note-new",
    "note-replay",
    "note-floor-replay",
)
PAYMENT_BODY = {"customerId": "cust_123", "amount": 100, "currency": "USD"}
NOTE_BODY = {"text": "hello"}
# Each path: its URL, its body, and how it is keyed ("none", "new" or "replay").
ROUTES: dict[str, tuple[str, dict[str, Any], str]] = {
    "baseline": ("/bench/baseline/payments", PAYMENT_BODY, "none"),
    "new": ("/bench/idempotent/payments", PAYMENT_BODY, "new"),
    "replay": ("/bench/idempotent/payments", PAYMENT_BODY, "replay"),
    "note-baseline": ("/bench/baseline/notes", NOTE_BODY, "none"),
    "note-new": ("/bench/idempotent/notes", NOTE_BODY, "new"),
    "note-replay": ("/bench/idempotent/notes", NOTE_BODY, "replay"),
    # The floor (bench/floor/protocol.py): the minimal protocol by hand, the same handlers.
    "floor": ("/bench/floor/payments", PAYMENT_BODY, "new"),
    "floor-replay": ("/bench/floor/payments", PAYMENT_BODY, "replay"),
    "note-floor": ("/bench/floor/notes", NOTE_BODY, "new"),
    "note-floor-replay": ("/bench/floor/notes", NOTE_BODY, "replay"),
}


def _setup(warm: tuple[str, ...] = PATHS) -> Callable[..., float]:
    """Django set up on this checkout, ``warm`` run 20 times each; returns ``run(path, n)`` ->
    seconds of CPU for n."""
    root = Path.cwd()
    sys.path.insert(0, str(root))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    out = StringIO()
    call_command("load_demo_data", stdout=out)
    out = StringIO()
    call_command("issue_token", "profiler", stdout=out)
    token = out.getvalue().strip()
    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Token {token}")
    completed: dict[str, list[str]] = {}  # by URL

    def post(url: str, body: str, key: str | None) -> None:
        headers = {} if key is None else {"Idempotency-Key": key}
        response = client.post(url, body, content_type="application/json", headers=headers)
        assert response.status_code == 201, (response.status_code, response.content[:300])

    def keys(url: str, body: str, keyed: str, n: int) -> list[str | None]:
        if keyed == "none":
            return [None] * n
        if keyed == "new":
            return [uuid.uuid4().hex for _ in range(n)]
        done = completed.setdefault(url, [])
        while len(done) < n:  # replays of keys completed beforehand
            key = uuid.uuid4().hex
            post(url, body, key)
            done.append(key)
        return list(done[:n])

    def run(path: str, n: int, *, profiler: Any = None) -> float:
        url, data, keyed = ROUTES[path]
        body = json.dumps(data)
        todo = keys(url, body, keyed, n)
        if profiler is not None:
            profiler.enable()
        start = time.process_time()
        for key in todo:
            post(url, body, key)
        used = time.process_time() - start
        if profiler is not None:
            profiler.disable()
        return used

    for path in warm:  # warm up: imports, caches, connections
        run(path, 20)
    return run


def measure(n: int, rounds: int) -> dict[str, float]:
    """CPU ms per request for each path: the least of ``rounds`` interleaved rounds of ``n``."""
    run = _setup()
    samples: dict[str, list[float]] = {path: [] for path in PATHS}
    for _ in range(rounds):
        for path in PATHS:
            samples[path].append(run(path, n) / n * 1000)
    # The least of the rounds: other processes on the machine only ever add to CPU time.
    return {path: min(values) for path, values in samples.items()}


def profile(path: str, n: int) -> None:
    import cProfile
    import pstats

    run = _setup()
    profiler = cProfile.Profile(time.process_time)  # CPU, not time spent waiting on the database
    run(path, n, profiler=profiler)
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(60)
    stats.sort_stats("cumulative").print_stats("idempotency/", 60)


def run_only(path: str, n: int) -> None:
    """Set up, then ``n`` requests of ``path`` with the garbage collector off: under callgrind
    the instructions of ``n`` requests minus those of none are the requests' own, and a
    collection landing in one run and not the other would blur that difference."""
    import gc

    run = _setup(warm=(path,))  # only its own: an older checkout may lack another's route
    gc.collect()
    gc.disable()
    if n:
        run(path, n)


def compare(other: Path, n: int, rounds: int) -> None:
    trees = {"this": Path.cwd(), "other": other.resolve()}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    script = Path(__file__).resolve()
    for _ in range(rounds):
        for name, tree in trees.items():
            output = subprocess.run(
                [sys.executable, str(script), "measure", str(n), "8"],
                cwd=tree,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            results[name].append(json.loads(output.strip().splitlines()[-1]))
    print(f"CPU ms per request (median of {rounds} runs, each the least of 8 rounds of {n})")
    print(f"{'path':<18}{'other':>10}{'this':>10}{'this/other':>12}")
    medians: dict[str, dict[str, float]] = {
        name: {path: statistics.median(r[path] for r in runs) for path in PATHS}
        for name, runs in results.items()
    }
    for path in PATHS:
        a, b = medians["other"][path], medians["this"][path]
        print(f"{path:<18}{a:>10.3f}{b:>10.3f}{b / a:>12.3f}")
    for name in trees:
        for prefix in ("", "note-"):
            overhead = medians[name][f"{prefix}new"] - medians[name][f"{prefix}baseline"]
            above = medians[name][f"{prefix}new"] - medians[name][f"{prefix}floor"]
            print(
                f"{name}: {prefix}new key over {prefix}baseline {overhead:.3f} ms, "
                f"over {prefix}floor {above:.3f} ms"
            )


def main(argv: list[str]) -> None:
    mode = argv[0] if argv else "measure"
    if mode == "measure":
        n = int(argv[1]) if len(argv) > 1 else 200
        rounds = int(argv[2]) if len(argv) > 2 else 5
        result: dict[str, Any] = measure(n, rounds)
        print(json.dumps(result))
    elif mode == "profile":
        profile(argv[1], int(argv[2]) if len(argv) > 2 else 500)
    elif mode == "run":
        run_only(argv[1], int(argv[2]))
    elif mode == "compare":
        compare(Path(argv[1]), int(argv[2]) if len(argv) > 2 else 100, 5)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
