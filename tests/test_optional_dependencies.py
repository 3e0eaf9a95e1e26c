"""Optional integrations cost nothing when absent: the app runs as if drf-spectacular were not
installed (it is blocked from import in a child interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys
# As if not installed: importing these raises ImportError and find_spec() finds nothing.
sys.modules["drf_spectacular"] = None
sys.modules["drf_spectacular_sidecar"] = None

import django
django.setup()
from django.apps import apps
from django.core.checks import run_checks
from django.core.management import call_command
from django.test import Client
from django.test.utils import setup_test_environment

setup_test_environment()
call_command("migrate", run_syncdb=True, verbosity=0)
client = Client()
def post():
    return client.post(
        "/test/widgets", {"name": "a"}, content_type="application/json",
        headers={"Idempotency-Key": "absent-1"},
    )
first, replay = post(), post()
print(json.dumps({
    "statuses": [first.status_code, replay.status_code],
    "replayed": replay.get("Idempotent-Replayed"),
    "contrib_loaded": "idempotency.contrib.drf_spectacular" in sys.modules,
    "spectacular_app": apps.is_installed("drf_spectacular"),
    "schema_route": client.get("/api/schema/").status_code,
    "checks": [str(message) for message in run_checks()],
}))
"""


def test_the_library_runs_without_drf_spectacular(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'absent.sqlite3'}",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {
        "statuses": [201, 201],
        "replayed": "true",
        "contrib_loaded": False,
        "spectacular_app": False,
        "schema_route": 404,
        "checks": [],
    }
