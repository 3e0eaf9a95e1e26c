"""``python -m bench [--quick]``: run the benchmark, write results/latest.{md,json}.

Exits non-zero on errors (a wrong answer, a server that does not start), never on a missed
target: the verdicts are printed and written with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from bench import report, targets
from bench.plan import FULL, QUICK
from bench.run import execute

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_idempotency"


def parse(argv: list[str]) -> argparse.Namespace:
    cores = os.cpu_count() or 2
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny counts for CI (under a minute)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL),
        help="PostgreSQL database the benchmark drops and recreates; its name must start with "
        "'bench' (default: %(default)s)",
    )
    parser.add_argument("--workers", type=int, default=cores + 1, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=2, help="threads per gunicorn worker")
    parser.add_argument(
        "--out",
        type=Path,
        help="results file stem (default: bench/results/latest, or .../quick with --quick)",
    )
    parser.add_argument("--note", default="", help="a sentence to print with the results")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="run nothing: judge the targets and write the Markdown again from a results JSON",
    )
    return parser.parse_args(argv)


def stop_on_signal(signum: int, frame: object) -> None:
    # SystemExit unwinds the run, so the gunicorn it started is stopped on the way out.
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop_on_signal)
    options = parse(argv)
    if options.render:
        stem = options.out or options.render.with_suffix("")
        results = json.loads(options.render.read_text())
        results["note"] = options.note or results.get("note", "")
    else:
        plan = QUICK if options.quick else FULL
        stem = options.out or RESULTS / ("quick" if options.quick else "latest")
        results = execute(
            plan,
            options.database_url,
            options.workers,
            options.threads,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
        results["note"] = options.note
    results["targets"] = targets.evaluate(results)
    stem.parent.mkdir(parents=True, exist_ok=True)
    text = report.markdown(results)
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print(text)
    print(f"written: {stem}.md, {stem}.json", file=sys.stderr)
    errors = sum(row["errors"] for row in results["latencies"])
    if errors:
        print(f"ERROR: {errors} wrong or failed answers (see the error samples)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
