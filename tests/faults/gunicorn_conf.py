"""Gunicorn hooks for the process-level fault tests (``tests/faults``), never for production.

Before a worker handles a request, it writes its pid to ``$FAULTS_PID_DIR/<sha256 of the key>``
so a test can ``kill -9`` exactly the worker that holds a given idempotency key.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any


def pre_request(worker: Any, req: Any) -> None:
    directory = os.environ.get("FAULTS_PID_DIR")
    key = next((value for name, value in req.headers if name == "IDEMPOTENCY-KEY"), None)
    if directory and key:
        name = hashlib.sha256(key.encode()).hexdigest()
        Path(directory, name).write_text(str(worker.pid))
