"""Celery tasks that run once per key, however often their message is delivered.

::

    from idempotency.contrib.celery import IdempotentTask

    @app.task(
        base=IdempotentTask,
        idempotency_key="event_id",
        acks_late=True,
        task_reject_on_worker_lost=True,
    )
    def charge(event_id, amount):
        ...

Each delivery reserves the key (scope ``celery:<task name>``) before the body runs. The body runs
in a transaction with the record's completion; later deliveries return the stored (JSON) result
without running it. While another delivery holds the key, this one becomes a Celery retry with a
countdown of the holder's remaining lease; the same key with other arguments is rejected, never
retried; a body that raises frees the key, so Celery's own retry runs it again. See docs/celery.md.

Import this module yourself: the app never imports it, and it is the only module that imports
Celery (the ``celery`` extra).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

try:
    from celery import Task
    from celery.exceptions import Reject, Retry
except ImportError as exc:  # the optional extra is missing: say which
    raise ImportError(
        "idempotency.contrib.celery needs Celery: pip install 'django-idempotency[celery]'"
    ) from exc

from idempotency.conf import idempotency_settings
from idempotency.contrib.arguments import KeySource, task_fingerprint, task_key
from idempotency.exceptions import (
    IdempotencyKeyInUse,
    IdempotencyKeyInvalid,
    IdempotencyKeyReused,
    IdempotencyLeaseLost,
)
from idempotency.operations import idempotent_operation
from idempotency.options import MAX_DURATION
from idempotency.store import RecordStore

SCOPE_PREFIX = "celery:"

# How soon a delivery whose attempt lost its lease looks again: the attempt that took the key
# over is running or done, and the next delivery receives its outcome.
LEASE_LOST_COUNTDOWN = 1

# True while this context runs a guarded task body: retry() then waits until the key is free.
_in_body: ContextVar[bool] = ContextVar("idempotency_celery_in_body", default=False)


class _RetryAfterRelease(Retry):
    """retry() called in the body: roll back and free the key first, then publish the retry.

    A Retry, so ``autoretry_for=(Exception,)`` lets it through as it lets Celery's own through.
    """

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__("retry after releasing the idempotency key")
        self.retry_args = args
        self.retry_kwargs = kwargs


# Celery has no type information (no py.typed, no stubs): Task is Any to mypy, and
# pyproject.toml allows subclassing it in this module only.
class IdempotentTask(Task):
    """A task base class: ``@app.task(base=IdempotentTask, idempotency_key=...)``.

    Options (class attributes, or keyword arguments of ``@app.task``):

    - ``idempotency_key``: the argument holding the key (an event id), or a callable taking the
      task's arguments and returning it. ``None`` (default): a hash of all the arguments.
    - ``idempotency_scope``: default ``"celery:<task name>"``.
    - ``idempotency_fingerprint``: a callable taking the task's arguments and returning what
      must match for a repeat. Default: all the arguments, by parameter name.
    - ``idempotency_lease``: how long a delivery holds the key; default the ``LEASE`` setting,
      raised to the task's hard ``time_limit`` when that is longer.
    - ``idempotency_expiry``: how long the result is kept; default the ``EXPIRY`` setting.
    - ``idempotency_store``: the :class:`~idempotency.store.RecordStore` (tests swap it).
    """

    idempotency_key: KeySource = None
    idempotency_scope: str | None = None
    idempotency_fingerprint: Callable[..., Any] | None = None
    idempotency_lease: timedelta | None = None
    idempotency_expiry: timedelta | None = None
    idempotency_store: RecordStore | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            lease = self.get_idempotency_lease()
            with idempotent_operation(
                scope=self.get_idempotency_scope(),
                key=self.get_idempotency_key(args, kwargs),
                fingerprint=self.get_idempotency_fingerprint(args, kwargs),
                operation=self.name,
                lease=lease,
                expiry=self.idempotency_expiry,
                store=self.idempotency_store,
                # Retry when the holder's lease ends (the hint never outlasts it), not after the
                # HTTP hint: every Celery retry spends one of the task's max_retries.
                retry_after=MAX_DURATION,
            ) as run:
                if run.should_run:
                    in_body = _in_body.set(True)
                    try:
                        run.result = super().__call__(*args, **kwargs)
                    finally:
                        _in_body.reset(in_body)
        except _RetryAfterRelease as deferred:
            # Published only now, with the key free: the retry never finds its own key held.
            raise super().retry(*deferred.retry_args, **deferred.retry_kwargs) from None
        except IdempotencyKeyInUse as exc:
            # Another delivery runs it now: look again when its lease runs out (it has finished,
            # or died and this delivery takes the key over). Counts as one of max_retries.
            raise super().retry(exc=exc, countdown=exc.retry_after) from None
        except IdempotencyLeaseLost as exc:
            # This attempt overran its lease, another took the key over; nothing was stored.
            raise super().retry(exc=exc, countdown=LEASE_LOST_COUNTDOWN) from None
        except (IdempotencyKeyReused, IdempotencyKeyInvalid) as exc:
            # No delivery of this message can ever succeed: reject it (dead-letter it), no retry.
            raise Reject(str(exc.detail), requeue=False) from exc
        return run.result

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        """Celery's retry, published after the body's transaction rolled back and freed the key.

        Called in the body (``raise self.retry(...)`` or ``autoretry_for``), it would otherwise
        publish the retry while this delivery still holds the key, and a quick retry would find
        it in progress.
        """
        if _in_body.get() and kwargs.get("throw", True):
            raise _RetryAfterRelease(args, kwargs)
        return super().retry(*args, **kwargs)

    def get_idempotency_scope(self) -> str:
        return self.idempotency_scope or f"{SCOPE_PREFIX}{self.name}"

    def get_idempotency_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        return task_key(self._option("idempotency_key"), self.name, self.run, args, kwargs)

    def get_idempotency_fingerprint(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return task_fingerprint(self._option("idempotency_fingerprint"), self.run, args, kwargs)

    def get_idempotency_lease(self) -> timedelta | None:
        """The lease must outlast a run: Celery's hard time limit is the longest one can take."""
        if self.idempotency_lease is not None:
            return self.idempotency_lease
        time_limit = self.time_limit or self.app.conf.task_time_limit
        if time_limit:
            return max(idempotency_settings.LEASE, timedelta(seconds=time_limit))
        return None

    def _option(self, name: str) -> Any:
        # A function given to @app.task(...) becomes a class attribute, and so a method: read it
        # unbound, so it receives the task's arguments and not the task.
        return inspect.getattr_static(self, name)
