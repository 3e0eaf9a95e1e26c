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

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from idempotency import options
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
    )
    if isinstance(outcome, StoredResponse):
        yield Run(should_run=False, result=json.loads(outcome.body))
        return
    run = Run(should_run=True)
    with outcome.holding(), store.atomic():
        yield run
        body = json.dumps(run.result, cls=DjangoJSONEncoder).encode()
        outcome.complete(StoredResponse(200, [], body))
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
) -> Any:
    """Run ``function`` once per ``key`` in ``scope``; return its (stored, JSON) result."""
    with idempotent_operation(
        scope=scope,
        key=key,
        fingerprint=fingerprint,
        operation=getattr(function, "__qualname__", None) or type(function).__qualname__,
        lease=lease,
        expiry=expiry,
        store=store,
    ) as run:
        if run.should_run:
            run.result = function()
    return run.result
