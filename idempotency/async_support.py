"""Running the protocol from async code: one thread, so one connection and one transaction.

Django's transactions are per connection and its connections per thread. The protocol's steps
(reserve, open the transaction, complete, release) are sync; an async view or consumer runs
them through ``sync_to_async`` inside one thread-sensitive context, where they and the ORM
calls the code awaits (``acreate``, ``aget``...) all run on one thread: the operation's writes
and its stored outcome then commit together, exactly as in sync code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from asgiref.sync import SyncToAsync, ThreadSensitiveContext, sync_to_async
from django.db import connections


@asynccontextmanager
async def one_thread() -> AsyncIterator[None]:
    """The enclosing thread-sensitive context (an ASGI request's), or one of this block's own.

    A context of its own gets a thread of its own: its connections are closed when the block
    ends, as Django closes a request's at its end.
    """
    standalone = SyncToAsync.thread_sensitive_context.get(None) is None
    async with ThreadSensitiveContext():
        try:
            yield
        finally:
            if standalone:
                await sync_to_async(connections.close_all)()
