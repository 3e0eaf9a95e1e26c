"""A task for django-tasks-db's `db_worker` processes (settings: tests.consumers.tasks_settings)."""

from __future__ import annotations

import json
import time

from django.tasks import task

from idempotency.contrib.tasks import idempotent_task
from tests.testapp.models import Widget


@task
@idempotent_task(key="event_id")
def charge(event_id, amount):
    widget = Widget.objects.create(name=f"charge:{event_id}", size=amount)
    time.sleep(0.2)  # long enough for the other worker to meet the held key
    return {"event": event_id, "widget": widget.pk}


def enqueue(event_id, times):
    for _ in range(times):
        charge.enqueue(event_id, 100)


def report(event_id):
    """What the workers did, as JSON on stdout."""
    from django_tasks_db.models import DBTaskResult

    results = list(DBTaskResult.objects.all())
    values = {json.dumps(result.return_value) for result in results if result.return_value}
    errors = {result.exception_class_path for result in results if result.exception_class_path}
    print(
        json.dumps(
            {
                "widgets": Widget.objects.filter(name=f"charge:{event_id}").count(),
                "statuses": sorted(result.status for result in results),
                "values": sorted(values),
                "errors": sorted(errors),
            }
        )
    )
