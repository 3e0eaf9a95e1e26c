"""Instructions per request, counted by callgrind: a number that does not move with the load.

CPU time per request moves by several per cent from run to run on a shared machine; the
instructions the app server's process executes for the same requests do not (valgrind's
``callgrind`` counts them; the database's own work, in its server process, is not counted).
Each path is run twice under callgrind, with none and with ``N`` requests after the same
set-up (``tools/profile_requests.py run``), and the difference is divided by ``N``::

    python tools/count_instructions.py                       # note-new, note-floor, this tree
    python tools/count_instructions.py --paths new floor     # any paths of profile_requests.py
    python tools/count_instructions.py --other /tmp/before   # beside another checkout

Needs valgrind (Debian's package) and ``DATABASE_URL`` (PostgreSQL), as profile_requests.py.
About a minute per path and tree, mostly the set-up under valgrind.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

# This checkout's driver, run in the tree measured (it imports the code of its working directory):
# an older checkout need not have its ``run`` mode.
SCRIPT = str(Path(__file__).resolve().parent / "profile_requests.py")


def instructions(tree: Path, path: str, n: int) -> int:
    """What callgrind counts for the set-up and ``n`` requests of ``path`` in ``tree``."""
    environment = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts every run
    completed = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            SCRIPT,
            "run",
            path,
            str(n),
        ],
        cwd=tree,
        env=environment,
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{path} in {tree} failed:\n{completed.stderr[-3000:]}")
    match = re.search(r"Collected : (\d+)", completed.stderr)
    if match is None:
        raise RuntimeError(f"callgrind printed no count:\n{completed.stderr[-2000:]}")
    return int(match.group(1))


def per_request(tree: Path, path: str, n: int) -> float:
    return (instructions(tree, path, n) - instructions(tree, path, 0)) / n


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", nargs="+", default=["note-new", "note-floor"])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--other", type=Path, help="another checkout, counted alike")
    args = parser.parse_args(argv)
    trees = {"this": Path.cwd()}
    if args.other is not None:
        trees["other"] = args.other.resolve()
    counts = {
        (name, path): per_request(tree, path, args.requests)
        for name, tree in trees.items()
        for path in args.paths
    }
    print(f"instructions per request (callgrind, {args.requests} requests)")
    header = f"{'path':<20}" + "".join(f"{name:>14}" for name in trees)
    if "other" in trees:
        header += f"{'this/other':>12}"
    print(header)
    for path in args.paths:
        line = f"{path:<20}" + "".join(f"{counts[(name, path)]:>14,.0f}" for name in trees)
        if "other" in trees:
            line += f"{counts[('this', path)] / counts[('other', path)]:>12.3f}"
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
