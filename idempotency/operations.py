"""Exactly-once work outside HTTP: webhook handlers and message consumers keyed by an event id.

::

    from idempotency.operations import run_once

    def on_charge_succeeded(event):
        return run_once(
            lambda: mark_paid(event["charge_id"]),
            scope="webhooks:gateway",
            key=event["id"],
            fingerprint=event,
        )

The first call runs the function and stores its JSON result with the key; every later call with
the key answers that result without running anything. The function's database writes commit
together with the stored result. While another worker holds the key, the call raises
:class:`~idempotency.exceptions.IdempotencyKeyInUse` (redeliver later); the same key with
another fingerprint raises :class:`~idempotency.exceptions.IdempotencyKeyReused`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.core.serializers.json import DjangoJSONEncoder

from idempotency import options
from idempotency.async_support import one_thread, uncancelled
from idempotency.attempts import begin
from idempotency.conf import idempotency_settings
from idempotency.fingerprints import canonical, hash_document
from idempotency.keys import operation_key, parse_key
from idempotency.options import Duration
from idempotency.scopes import checked_scope
from idempotency.store import RecordStore, StoredResponse

# What the record shows in the method column for operations that are not HTTP requests.
OPERATION_METHOD = "EVENT"


@dataclass
class Run:
    """One attempt at an operation: run it only if ``should_run``, and set ``result``."""

    should_run: bool
    result: Any = None

    @property
    def replayed(self) -> bool:
        return not self.should_run


@contextmanager
def idempotent_operation(
    *,
    scope: str,
    key: str | int,
    fingerprint: object = None,
    operation: str = "",
    lease: Duration | None = None,
    expiry: Duration | None = None,
    store: RecordStore | None = None,
    retry_after: Duration | None = None,
    wait: Duration | None = None,
) -> Iterator[Run]:
    """Reserve ``key`` in ``scope``; the block does the work only when ``run.should_run``.

    ::

        with idempotent_operation(scope="webhooks:gateway", key=event_id) as run:
            if run.should_run:
                run.result = handle(payload)
        return run.result  # the stored result, for the first delivery and every repeat

    ``fingerprint`` is any JSON-like value naming the work (the payload, say): the same key
    with another fingerprint is refused. ``operation`` is recorded as the record's path (default:
    the scope). The block runs in a transaction on the store's database: it raises, its writes
    roll back and the key is freed for the next delivery. After the block, ``run.result`` holds
    the stored JSON form of the result, the same value every delivery sees.
    """
    # Every argument is checked before anything is stored; an int key counts as its digits.
    key_text = parse_key(operation_key(key), idempotency_settings.MAX_KEY_LENGTH)
    scope = checked_scope(scope, "run_once(scope=...)")
    operation = options.text(operation, "idempotent_operation(operation=...)")
    lease_for, expiry_for = options.operation_durations(
        lease, expiry, idempotency_settings.LEASE, idempotency_settings.EXPIRY, "run_once"
    )
    store = store or RecordStore()
    outcome = begin(
        store,
        sender=idempotent_operation,
        request=None,
        scope=scope,
        key=key_text,
        fingerprint=hash_document(canonical(fingerprint)),
        method=OPERATION_METHOD,
        path=operation or scope,
        lease=lease_for,
        expiry=expiry_for,
        retry_after=options.optional_duration(retry_after, "run_once(retry_after=...)"),
        wait=options.optional_wait_duration(wait, "run_once(wait=...)"),
    )
    if isinstance(outcome, StoredResponse):
        yield Run(should_run=False, result=json.loads(outcome.body))
        return
    run = Run(should_run=True)
    with outcome.holding(), outcome.transaction() as guarded:
        yield run
        body = json.dumps(run.result, cls=DjangoJSONEncoder).encode()
        guarded.complete(StoredResponse(200, [], body))
    run.result = json.loads(body)


def run_once(
    function: Callable[[], Any],
    *,
    scope: str,
    key: str | int,
    fingerprint: object = None,
    lease: Duration | None = None,
    expiry: Duration | None = None,
    store: RecordStore | None = None,
    retry_after: Duration | None = None,
    wait: Duration | None = None,
) -> Any:
    """Run ``function`` once per ``key`` in ``scope``; return its (stored, JSON) result."""
    with idempotent_operation(
        scope=scope,
        key=key,
        fingerprint=fingerprint,
        operation=_operation_name(function),
        lease=lease,
        expiry=expiry,
        store=store,
        retry_after=retry_after,
        wait=wait,
    ) as run:
        if run.should_run:
            run.result = function()
    return run.result


async def arun_once(
    function: Callable[[], Awaitable[Any]],
    *,
    scope: str,
    key: str | int,
    fingerprint: object = None,
    lease: Duration | None = None,
    expiry: Duration | None = None,
    store: RecordStore | None = None,
    retry_after: Duration | None = None,
    wait: Duration | None = None,
) -> Any:
    """:func:`run_once` for async consumers: ``await function()`` once per ``key`` in ``scope``.

    The guard's steps run through ``sync_to_async`` in one thread-sensitive context (the
    request's, inside an async view; one of its own otherwise), so they and the function's
    awaited ORM calls share one thread and one connection: the function's writes and the stored
    result commit in one transaction. Outside a request, the context's connections are closed
    at the end.
    """
    async with one_thread():
        guard = idempotent_operation(
            scope=scope,
            key=key,
            fingerprint=fingerprint,
            operation=_operation_name(function),
            lease=lease,
            expiry=expiry,
            store=store,
            retry_after=retry_after,
            wait=wait,
        )

        async def undo(_: Run, cancelled: asyncio.CancelledError) -> None:
            await sync_to_async(guard.__exit__)(type(cancelled), cancelled, None)

        run = await uncancelled(sync_to_async(guard.__enter__)(), undo)
        if run.should_run:
            try:
                run.result = await function()
            except BaseException as error:
                # Frees the key (rolling the writes back) and raises, as run_once does.
                await sync_to_async(guard.__exit__)(type(error), error, error.__traceback__)
                raise
        await sync_to_async(guard.__exit__)(None, None, None)
        return run.result


def _operation_name(function: Callable[..., Any]) -> str:
    """What the record shows as the path of a ``run_once``/``arun_once`` call."""
    return getattr(function, "__qualname__", None) or type(function).__qualname__
