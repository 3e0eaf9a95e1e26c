"""The demo's own settings for the Celery workers of tests/demo/test_tasks.py: emails written to
files (the test counts what another process sent) and a queue of the test run's own."""

from __future__ import annotations

import os

from config.settings import *  # noqa: F403

EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = os.environ["DEMO_TEST_MAILDIR"]
CELERY_TASK_DEFAULT_QUEUE = os.environ["DEMO_TEST_QUEUE"]
