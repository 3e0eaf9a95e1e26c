"""The demo's Celery app: ``celery -A demo_api worker`` runs the demo's tasks (``orders.tasks``).

Configured from Django's settings, the ``CELERY_``-prefixed ones (``config/settings.py`` reads
them from the environment). Without ``CELERY_BROKER_URL`` a task runs eagerly, in the process
that sends it, so ``bin/demo`` needs no broker.

Here, not in ``config/``: the apps bind their tasks to it (``@app.task``) and never import the
project's configuration. Not ``@shared_task``: a shared task runs on the Celery app the calling
thread made current last, and in a process that also holds another app (the test suite's
consumer tests make one) the demo's messages would go to that app's broker.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("demo")
app.config_from_object("django.conf:settings", namespace="CELERY")
# A worker imports each installed app's tasks module (orders.tasks) once Django is set up.
app.autodiscover_tasks()
