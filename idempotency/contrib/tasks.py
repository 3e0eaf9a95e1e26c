"""Django's own tasks (``django.tasks``, Django 6.0+) that run once per key.

::

    from django.tasks import task

    from idempotency.contrib.tasks import idempotent_task

    @task
    @idempotent_task(key="event_id")
    def send_receipt(event_id, order_id):
        ...

Put it under ``@task``. Each run reserves the key (scope ``tasks:<module>.<function>``) before the
body runs; the body runs in a transaction with the record's completion; later runs return the
stored (JSON) result without running it. django.tasks has no retries, so a run that finds the
key held by another run raises :class:`~idempotency.exceptions.IdempotencyKeyInUse` (its result
is FAILED; the other run does the work), and one that finds the key used with other arguments
raises :class:`~idempotency.exceptions.IdempotencyKeyReused`. See docs/celery.md.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar, overload

try:
    from django.tasks.base import TaskContext
except ImportError as exc:  # Django 5.2: say what is missing
    raise ImportError("idempotency.contrib.tasks needs django.tasks: Django 6.0 or later") from exc

from idempotency.contrib.arguments import KeySource, task_fingerprint, task_key
from idempotency.operations import idempotent_operation
from idempotency.store import RecordStore

SCOPE_PREFIX = "tasks:"

P = ParamSpec("P")
R = TypeVar("R")


@overload
def idempotent_task(function: Callable[P, R], /) -> Callable[P, Any]: ...


@overload
def idempotent_task(
    *,
    key: KeySource = None,
    scope: str | None = None,
    fingerprint: Callable[..., Any] | None = None,
    lease: timedelta | None = None,
    expiry: timedelta | None = None,
    store: RecordStore | None = None,
) -> Callable[[Callable[P, R]], Callable[P, Any]]: ...


def idempotent_task(
    function: Callable[..., Any] | None = None,
    /,
    *,
    key: KeySource = None,
    scope: str | None = None,
    fingerprint: Callable[..., Any] | None = None,
    lease: timedelta | None = None,
    expiry: timedelta | None = None,
    store: RecordStore | None = None,
) -> Any:
    """Run the task function once per key; every run returns the stored JSON result.

    ``key``: the argument holding the key (an event id), or a callable taking the task's
    arguments; ``None``: a hash of all the arguments. ``fingerprint``: a callable taking the
    arguments, returning what must match for a repeat (default: all the arguments). A task that
    ``takes_context`` keeps its context out of both. ``lease``, ``expiry``: default the settings.
    """

    def decorate(body: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(body):
            raise TypeError(f"idempotent_task does not support async tasks ({body.__qualname__}).")
        name = f"{body.__module__}.{body.__qualname__}"

        @functools.wraps(body)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            # A takes_context task gets a fresh TaskContext first: not part of the call's identity.
            context = args[:1] if args and isinstance(args[0], TaskContext) else ()
            signature = functools.partial(body, *context)
            rest = args[len(context) :]
            with idempotent_operation(
                scope=scope or f"{SCOPE_PREFIX}{name}",
                key=task_key(key, name, signature, rest, kwargs),
                fingerprint=task_fingerprint(fingerprint, signature, rest, kwargs),
                operation=name,
                lease=lease,
                expiry=expiry,
                store=store,
            ) as run:
                if run.should_run:
                    run.result = body(*args, **kwargs)
            return run.result

        return guarded

    if function is not None:
        return decorate(function)
    return decorate
