"""Running the protocol from async code: one thread, so one connection and one transaction.

Django's transactions are per connection and its connections per thread. The protocol's steps
(reserve, open the transaction, complete, release) are sync; an async view or consumer runs
them through ``sync_to_async`` inside one thread-sensitive context, where they and the ORM
calls the code awaits (``acreate``, ``aget``...) all run on one thread: the operation's writes
and its stored outcome then commit together, exactly as in sync code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from asgiref.sync import AsyncToSync, SyncToAsync, ThreadSensitiveContext, sync_to_async
from django.db import connections

T = TypeVar("T")


@asynccontextmanager
async def one_thread() -> AsyncIterator[None]:
    """The enclosing thread-sensitive context (an ASGI request's), or one of this block's own.

    A context of its own gets a thread of its own: its connections are closed when the block
    ends, as Django closes a request's at its end.
    """
    # Under async_to_sync, thread-sensitive code runs on the calling thread (its connection, its
    # transaction): not ours to close.
    standalone = (
        SyncToAsync.thread_sensitive_context.get(None) is None
        and getattr(AsyncToSync.executors, "current", None) is None
    )
    async with ThreadSensitiveContext():
        try:
            yield
        finally:
            if standalone:
                await sync_to_async(connections.close_all)()


async def uncancelled(
    step: Awaitable[T], undo: Callable[[T, asyncio.CancelledError], Awaitable[object]]
) -> T:
    """Await ``step`` (a sync step on the protocol's thread) through the caller's cancellation.

    A sync step cannot be interrupted: cancelled meanwhile (a consumer's timeout, a client
    gone), the step still finishes on its thread, perhaps holding the key. Its result is then
    handed to ``undo`` (which frees the key) before the cancellation goes on.
    """
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError as cancelled:
        result = await task
        await undo(result, cancelled)
        raise
