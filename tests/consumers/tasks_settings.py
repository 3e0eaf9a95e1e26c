"""The test settings with django-tasks-db's DatabaseBackend: what tests/consumers/db_tasks.py and
its `db_worker` processes run with (see test_django_tasks_db.py)."""

from __future__ import annotations

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks_db"]
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
