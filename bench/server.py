"""The demo under gunicorn, on a free loopback port in 18100-18199, stopped whatever happens."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
PORTS = range(18100, 18200)


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"No free port in {PORTS.start}-{PORTS.stop - 1} on {HOST}.")


class Gunicorn:
    """``with Gunicorn(...) as server:`` runs the demo; leaving the block stops every worker.

    gthread workers: they keep connections alive (sync workers close each one), and a thread
    waiting on PostgreSQL leaves the worker's interpreter to another request.
    """

    def __init__(
        self, root: Path, env: dict[str, str], workers: int, threads: int, log: Path
    ) -> None:
        self.root = root
        self.env = env
        self.workers = workers
        self.threads = threads
        self.log = log
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            f"--bind={HOST}:{self.port}",
            "--worker-class=gthread",
            f"--workers={self.workers}",
            f"--threads={self.threads}",
            "--keep-alive=75",
            "--backlog=2048",
            "--log-level=warning",
            f"--error-logfile={self.log}",
        ]

    def __enter__(self) -> Gunicorn:
        # A session of its own: the master and its workers form one process group we can end.
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.root,
            env={**os.environ, **self.env},
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_ready(self, timeout: float = 60) -> None:
        """Until every worker has answered (each loads the project on its first request)."""
        deadline = time.monotonic() + timeout
        answered = 0
        while answered < self.workers * 4:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited at start; see {self.log}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn not ready after {timeout} s; see {self.log}")
            try:
                connection = http.client.HTTPConnection(HOST, self.port, timeout=5)
                connection.request("GET", "/bench/ping")
                if connection.getresponse().status == 200:
                    answered += 1
                connection.close()
            except OSError:
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is None:
            return
        group = self.process.pid  # the session leader's pid is its group's id
        if self.process.poll() is None:
            os.killpg(group, signal.SIGTERM)  # gunicorn's graceful shutdown
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(group, signal.SIGKILL)
                self.process.wait()
        with contextlib.suppress(ProcessLookupError):  # a worker that outlived its master
            os.killpg(group, signal.SIGKILL)
        self.process = None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        except OSError:
            return ""
