"""A task's key and fingerprint from its arguments: shared by the Celery and django.tasks guards."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from idempotency.fingerprints import canonical, hash_document

# The key: the name of an argument (an event id), a callable taking the task's arguments, or
# None for a hash of all of them.
KeySource = str | Callable[..., Any] | None


def task_arguments(
    function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The arguments by parameter name, defaults filled in: positional and keyword calls agree."""
    try:
        bound = inspect.signature(function).bind(*args, **kwargs)
    except (TypeError, ValueError):  # the call does not fit: the body will raise as it would
        return {"*args": list(args), "**kwargs": kwargs}
    bound.apply_defaults()
    return dict(bound.arguments)


def task_key(
    source: KeySource,
    name: str,
    function: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> str:
    """The key of this call of task ``name``, from ``source``."""
    if source is None:
        return hash_document(canonical(task_arguments(function, args, kwargs)))
    if callable(source):
        return str(source(*args, **kwargs))
    arguments = task_arguments(function, args, kwargs)
    if source not in arguments:
        raise TypeError(f"{name}: the idempotency key names {source!r}, an argument it lacks.")
    return str(arguments[source])


def task_fingerprint(
    source: Callable[..., Any] | None,
    function: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """What must match for a repeat of the key: ``source``'s answer, or all the arguments."""
    if source is not None:
        return source(*args, **kwargs)
    return task_arguments(function, args, kwargs)
