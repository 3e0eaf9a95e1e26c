"""Stored outcomes: what of a response is kept, and how a replay is rebuilt from it."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from functools import lru_cache

from django.http import HttpResponse
from django.http.response import HttpResponseBase, ResponseHeaders

from idempotency.conf import NEVER_REPLAYED_HEADERS, idempotency_settings
from idempotency.exceptions import ResponseNotStorable
from idempotency.store import StoredResponse

REPLAYED_HEADER = "Idempotent-Replayed"

logger = logging.getLogger("idempotency")


def replayed_header_names(names: Collection[str] | None = None) -> frozenset[str]:
    """Lower-cased names of the headers to store: ``names`` or the setting, never Set-Cookie.

    ``Content-Type`` is always kept: a body replayed without it is a different response.
    """
    if names is None:
        names = idempotency_settings.REPLAYED_HEADERS
    return _stored_names(names if isinstance(names, tuple) else tuple(names))


# Keyed by the names themselves (the setting's tuple, a view's): nothing to clear when they change.
@lru_cache(maxsize=64)
def _stored_names(names: tuple[str, ...]) -> frozenset[str]:
    return (frozenset(name.lower() for name in names) | {"content-type"}) - NEVER_REPLAYED_HEADERS


def storable(response: HttpResponseBase) -> HttpResponseBase:
    """``response`` with its whole body in memory, so it can be stored and replayed.

    A streaming response (``StreamingHttpResponse``, ``FileResponse``) is read here, inside the
    operation's transaction, up to ``MAX_STORED_BODY`` bytes, and then streams what was read:
    telling the client "done" while the writes roll back (or storing no outcome, so a retry
    runs again) is what must never happen. Past the limit, or for an async iterator a sync view
    cannot read, it raises :class:`ResponseNotStorable`.
    """
    if not getattr(response, "streaming", False):
        return response
    limit = idempotency_settings.MAX_STORED_BODY
    if getattr(response, "is_async", False):
        logger.error(
            "idempotency: an async streaming response cannot be stored for replay by a sync "
            "view; answer a regular HttpResponse or a sync iterator from a protected view"
        )
        raise ResponseNotStorable()
    body = bytearray()
    for chunk in response.streaming_content:  # type: ignore[attr-defined]
        body += chunk
        if len(body) > limit:
            _log_too_large(limit)
            raise ResponseNotStorable()
    # Not response.close(): it would send request_finished, which closes the connection that
    # holds the operation's transaction. Django closes the response (and its file) as usual.
    response.streaming_content = [bytes(body)]  # type: ignore[attr-defined]
    return response


async def read_async_stream(response: HttpResponseBase) -> HttpResponseBase:
    """An async view's async streaming body, read in the event loop as :func:`storable` reads.

    Bounded by ``MAX_STORED_BODY`` (else :class:`ResponseNotStorable`); any other response is
    returned as it is.
    """
    if not (getattr(response, "streaming", False) and getattr(response, "is_async", False)):
        return response
    limit = idempotency_settings.MAX_STORED_BODY
    body = bytearray()
    async for chunk in response.streaming_content:  # type: ignore[attr-defined]
        body += chunk
        if len(body) > limit:
            _log_too_large(limit)
            raise ResponseNotStorable()
    response.streaming_content = [bytes(body)]  # type: ignore[attr-defined]
    return response


def snapshot(response: HttpResponseBase, replayed: frozenset[str]) -> StoredResponse:
    """The status, the allow-listed headers and the rendered body of ``response``.

    Pass a streaming response through :func:`storable` first. Raises
    :class:`ResponseNotStorable` for a body over ``MAX_STORED_BODY``.
    """
    body = _body(response)
    if len(body) > idempotency_settings.MAX_STORED_BODY:
        _log_too_large(idempotency_settings.MAX_STORED_BODY)
        raise ResponseNotStorable()
    headers = [(name, value) for name, value in _header_pairs(response) if name.lower() in replayed]
    return StoredResponse(response.status_code, headers, body)


def _body(response: HttpResponseBase) -> bytes:
    if isinstance(response, HttpResponse):
        return bytes(response.content)
    # A streaming response that storable() read: one chunk, read again and put back.
    body = b"".join(response.streaming_content)  # type: ignore[attr-defined]
    response.streaming_content = [body]  # type: ignore[attr-defined]
    return body


def _log_too_large(limit: int) -> None:
    logger.error(
        "idempotency: a response of a protected view is over MAX_STORED_BODY (%d bytes); "
        "nothing was stored and its writes rolled back. Raise the setting or leave this view "
        "unprotected.",
        limit,
    )


def replay_response(stored: StoredResponse) -> HttpResponse:
    """Rebuild the stored outcome, marked with ``Idempotent-Replayed: true``."""
    # Given to the constructor, the stored headers spare it a default Content-Type to compute
    # and delete; one the outcome had none of (an empty DRF body) is deleted as before.
    response = HttpResponse(
        stored.body, status=stored.status, headers=[*stored.headers, (REPLAYED_HEADER, "true")]
    )
    if not any(name.lower() == "content-type" for name, _ in stored.headers):
        del response["Content-Type"]
    return response


def _header_pairs(response: HttpResponseBase) -> Iterable[tuple[str, str]]:
    """What ``response.items()`` yields, which Django's handlers send. Django's own header store
    (``{lower: (name, value)}``, in order) holds those pairs, which ``items()`` would rebuild one
    lookup at a time through Mapping's generic views; a response or header class of its own
    may yield others, and is asked."""
    if type(response).items is HttpResponseBase.items and type(response.headers) is ResponseHeaders:
        store = getattr(response.headers, "_store", None)  # private: asked, not assumed
        if type(store) is dict:
            return store.values()
    return response.items()
