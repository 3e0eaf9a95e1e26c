"""The Celery and django.tasks guards cost nothing when absent: the app runs without Celery, and
importing a guard without its dependency names what to install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.util import find_spec

import pytest

from tests.consumers.conftest import ROOT

CHILD = """
import json, sys
sys.modules["celery"] = None  # as if not installed
from django.conf import settings
# The library's own test views: the demo's (tests.urls) need Celery, its order email is a task.
settings.ROOT_URLCONF = "tests.plain_urls"
import django
django.setup()
from django.core.checks import run_checks
try:
    import idempotency.contrib.celery
except ImportError as error:
    message = str(error)
print(json.dumps({
    "celery_loaded": any(name.startswith("celery.") for name in sys.modules),
    "checks": [str(check) for check in run_checks()],
    "message": message,
}))
"""


def test_without_celery_the_app_runs_and_the_guard_names_the_extra(tmp_path):
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
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "celery_loaded": False,
        "checks": [],
        "message": (
            "idempotency.contrib.celery needs Celery: pip install 'django-idempotency[celery]'"
        ),
    }


@pytest.mark.skipif(find_spec("django.tasks") is not None, reason="Django 6.0+ has django.tasks")
def test_before_django_6_the_tasks_guard_names_the_django_it_needs():
    with pytest.raises(ImportError, match="needs django.tasks: Django 6.0 or later"):
        import idempotency.contrib.tasks  # noqa: F401
