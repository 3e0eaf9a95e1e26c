"""The purge command of two checkouts side by side: records per second and longest transaction.

    python tools/compare_purge.py OTHER_TREE   # e.g. git archive HEAD~1 | tar -x -C /tmp/before

Recreates ``bench_purgecmp`` on 127.0.0.1:5432, stores 200,000 live records, then alternates
(two rounds): 1,000,000 expired records added, purged by one checkout's command, observed by
``bench.purge.measure`` (a pg_stat_activity sampler and a row-lock prober).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import database  # noqa: E402
from bench.purge import measure  # noqa: E402

URL = "postgres://postgres@127.0.0.1:5432/bench_purgecmp"
EXPIRED, LIVE = 1_000_000, 200_000


def main(other: Path) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DATABASE_URL": URL,
        "GATEWAY_DATABASE_URL": URL,
    }
    database.recreate(URL)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    database.fill(URL, 1, LIVE, "s")
    first = 10_000_000
    for round_index in range(2):
        for name, root in (("other", other.resolve()), ("this", ROOT)):
            database.fill(URL, first, first + EXPIRED - 1, "s", expired=True)
            first += EXPIRED
            result = measure(root, URL, {**env, "PYTHONPATH": str(root)}, EXPIRED, LIVE)
            print(
                f"{name:5} round {round_index}: {result.records_per_second_batches:>9,.0f}/s "
                f"(first transaction to last), {result.records_per_second:>9,.0f}/s (command), "
                f"longest transaction >= {result.longest_transaction_ms_at_least:.0f} ms",
                flush=True,
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
