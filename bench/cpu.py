"""CPU time by process group, read from /proc: where a request's cost lands, and what else ran.

Per run it answers: how many milliseconds of CPU each request took in the gunicorn workers
and in their PostgreSQL backends, and how much CPU the rest of the machine (other users,
PostgreSQL's background processes) used meanwhile, so a noisy run is visible as such.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICK = 1 / os.sysconf("SC_CLK_TCK")


def process_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK  # utime, stime


def children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry.name))
    return found


def machine_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) * TICK, sum(values) * TICK


@dataclass(frozen=True)
class Snapshot:
    groups: dict[str, float]
    busy: float
    total: float


def snapshot(groups: dict[str, list[int]]) -> Snapshot:
    busy, total = machine_seconds()
    seconds = {name: sum(process_seconds(pid) for pid in pids) for name, pids in groups.items()}
    return Snapshot(seconds, busy, total)


def usage(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds used per group between two snapshots, plus ``machine`` and ``elapsed``."""
    used = {name: after.groups[name] - before.groups[name] for name in before.groups}
    used["machine"] = after.busy - before.busy
    used["capacity"] = after.total - before.total
    return used
