"""``@idempotent``: the mixin's guarantees for plain Django function views.

Put authentication decorators *outside* it (above it), so a replay only ever goes to a caller
who may make the request now::

    @login_required
    @require_POST
    @idempotent(required=False)
    def checkout(request): ...
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Generator
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any, cast, overload

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from idempotency.async_support import one_thread, uncancelled
from idempotency.attempts import (
    STORAGE_ERRORS,
    Attempt,
    begin,
    storage_unavailable,
    unprotected_request_transaction,
)
from idempotency.conf import idempotency_settings
from idempotency.exceptions import (
    IdempotencyKeyMissing,
    ProblemDetailsError,
    RequestBodyTooLarge,
    problem_response,
)
from idempotency.fingerprints import http_request_fingerprint
from idempotency.keys import header_value, parse_key
from idempotency.options import (
    Duration,
    expiry_after_lease,
    optional_duration,
    optional_flag,
    optional_function,
    optional_header_names,
    optional_methods,
    optional_wait_duration,
)
from idempotency.outcomes import is_final
from idempotency.responses import (
    read_async_stream,
    replay_response,
    replayed_header_names,
    snapshot,
    storable,
)
from idempotency.scopes import checked_scope
from idempotency.store import RecordStore, StoredResponse

# A sync view returns a response, an async one a coroutine of it.
ViewFunction = Callable[..., Any]
RequestFunction = Callable[[HttpRequest], str]


@dataclass
class IdempotentViewOptions:
    """One protected view's choices; ``None`` falls back to ``settings.IDEMPOTENCY``.

    Reachable as ``view.idempotency`` on the decorated function, and on any decorator applied
    around it (``functools.wraps`` copies the reference), so a test can swap ``store``.
    """

    view: ViewFunction
    methods: Collection[str] | None
    required: bool | None
    lease: timedelta | None
    expiry: timedelta | None
    replayed_headers: Collection[str] | None
    retry_after: timedelta | None
    wait: timedelta | None
    scope: RequestFunction | None
    fingerprint: RequestFunction | None
    store: RecordStore | None


@overload
def idempotent(view: ViewFunction, /) -> ViewFunction: ...


@overload
def idempotent(
    *,
    methods: Collection[str] | None = None,
    required: bool | None = None,
    lease: Duration | None = None,
    expiry: Duration | None = None,
    replayed_headers: Collection[str] | None = None,
    retry_after: timedelta | None = None,
    wait: timedelta | None = None,
    scope: RequestFunction | None = None,
    fingerprint: RequestFunction | None = None,
    store: RecordStore | None = None,
) -> Callable[[ViewFunction], ViewFunction]: ...


def idempotent(
    view: ViewFunction | None = None,
    /,
    *,
    methods: Collection[str] | None = None,
    required: bool | None = None,
    lease: Duration | None = None,
    expiry: Duration | None = None,
    replayed_headers: Collection[str] | None = None,
    retry_after: timedelta | None = None,
    wait: timedelta | None = None,
    scope: RequestFunction | None = None,
    fingerprint: RequestFunction | None = None,
    store: RecordStore | None = None,
) -> ViewFunction | Callable[[ViewFunction], ViewFunction]:
    """Protect a function view's unsafe methods with an ``Idempotency-Key``.

    Use it bare (``@idempotent``) or with options (``@idempotent(required=False)``); each option
    left at ``None`` follows ``settings.IDEMPOTENCY``. ``scope`` and ``fingerprint`` take the
    ``HttpRequest``; the default fingerprint is
    :func:`idempotency.fingerprints.http_request_fingerprint`. The store is read from the
    returned function's ``idempotency.store`` on each request, so tests can swap it. Signals are
    sent with the undecorated function (``view.idempotency.view``) as sender.
    """

    def decorate(function: ViewFunction) -> ViewFunction:
        if isinstance(function, type) or not callable(function):
            raise TypeError(
                f"@idempotent protects view functions, not {function!r}: decorate "
                "View.as_view(), or put IdempotentMixin on a DRF view class."
            )
        options = _checked_options(
            function,
            methods,
            required,
            lease,
            expiry,
            replayed_headers,
            retry_after,
            wait,
            scope,
            fingerprint,
            store,
        )
        protected: ViewFunction
        if iscoroutinefunction(function):

            async def protected_async(
                request: HttpRequest, *args: Any, **kwargs: Any
            ) -> HttpResponseBase:
                guard = _Guard(options, options.store or RecordStore())
                return await guard.run_async(request, *args, **kwargs)

            protected = cast(ViewFunction, wraps(function)(protected_async))
        else:

            def protected_sync(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
                guard = _Guard(options, options.store or RecordStore())
                return guard(request, *args, **kwargs)

            protected = cast(ViewFunction, wraps(function)(protected_sync))
        protected.idempotency = options  # type: ignore[attr-defined]
        # The reservation commits on its own before the view runs, so ATOMIC_REQUESTS must not
        # wrap it; _Guard restores that transaction for requests it does not protect.
        using = (store or RecordStore()).using
        return transaction.non_atomic_requests(using=using)(protected)

    return decorate if view is None else decorate(view)


def _checked_options(
    view: ViewFunction,
    methods: object,
    required: object,
    lease: object,
    expiry: object,
    replayed_headers: object,
    retry_after: object,
    wait: object,
    scope: object,
    fingerprint: object,
    store: RecordStore | None,
) -> IdempotentViewOptions:
    """The options converted as the settings are, or refused now, naming the view."""
    name = getattr(view, "__qualname__", repr(view))

    def where(option: str) -> str:
        return f"@idempotent({option}=...) on {name}"

    own_lease = optional_duration(lease, where("lease"))
    own_expiry = optional_duration(expiry, where("expiry"))
    if own_lease is not None and own_expiry is not None:
        expiry_after_lease(own_lease, own_expiry, f"view {name}", where("expiry"))
    return IdempotentViewOptions(
        view,
        methods=optional_methods(methods, where("methods")),
        required=optional_flag(required, where("required")),
        lease=own_lease,
        expiry=own_expiry,
        replayed_headers=optional_header_names(replayed_headers, where("replayed_headers")),
        retry_after=optional_duration(retry_after, where("retry_after")),
        wait=optional_wait_duration(wait, where("wait")),
        scope=optional_function(scope, where("scope")),
        fingerprint=optional_function(fingerprint, where("fingerprint")),
        store=store,
    )


# Steps of one protected request that run around the view: opened (holding the key, in the
# operation's transaction) up to the view's call, then sent its response or thrown its error.
Protocol = Generator[None, HttpResponseBase, HttpResponseBase]


class _Guard:
    """One request through a protected view, sync or async.

    The protocol is one generator (:meth:`_protocol`): it reserves the key and opens the
    operation's transaction, pauses while the view runs, then stores or releases. An async view
    runs the generator's steps through ``sync_to_async`` in one thread-sensitive context, so
    they share one thread and one connection: the view's awaited ORM writes and the record's
    completion commit in one transaction, as for a sync view.
    """

    def __init__(self, options: IdempotentViewOptions, store: RecordStore) -> None:
        self.view = options.view
        self.options = options
        self.store = store

    def __call__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        opened = self._open(request)
        if opened is None:
            with unprotected_request_transaction(self.store.using):
                answer: HttpResponseBase = self.view(request, *args, **kwargs)
                return answer
        if isinstance(opened, HttpResponseBase):
            return opened
        try:
            response = self.view(request, *args, **kwargs)
        except BaseException as error:
            return self._settle(opened, error=error)
        return self._settle(opened, response=response)

    async def run_async(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        async with one_thread():

            async def undo(opened: object, cancelled: asyncio.CancelledError) -> None:
                if isinstance(opened, Generator):
                    with suppress(asyncio.CancelledError):
                        await sync_to_async(self._settle)(opened, error=cancelled)

            opened = await uncancelled(sync_to_async(self._open)(request), undo)
            if opened is None:
                # Django refuses ATOMIC_REQUESTS on async views: none to restore.
                unprotected: HttpResponseBase = await self.view(request, *args, **kwargs)
                return unprotected
            if isinstance(opened, HttpResponseBase):
                return opened
            try:
                response = await self.view(request, *args, **kwargs)
                if is_final(response.status_code):
                    response = await read_async_stream(response)
            except BaseException as error:
                return await sync_to_async(self._settle)(opened, error=error)
            return await sync_to_async(self._settle)(opened, response=response)

    def _open(self, request: HttpRequest) -> Protocol | HttpResponseBase | None:
        """The protocol, paused where the view runs; a response to answer now; None: unprotected."""
        methods = self.options.methods
        protected = idempotency_settings.METHODS if methods is None else methods
        method = (request.method or "").upper()
        # HEAD runs the GET view: where GET is protected, so is HEAD.
        checked = "GET" if method == "HEAD" else method
        if checked not in {method.upper() for method in protected}:
            return None
        raw = header_value(request, idempotency_settings.HEADER)
        if raw is None:
            required = self.options.required
            if not (idempotency_settings.REQUIRED if required is None else required):
                return None
        try:
            if raw is None:
                raise IdempotencyKeyMissing()
            outcome = self._begin(request, parse_key(raw, idempotency_settings.MAX_KEY_LENGTH))
            if isinstance(outcome, StoredResponse):
                return replay_response(outcome)
            protocol = self._protocol(outcome)
            next(protocol)  # reserve done: hold the key and open the operation's transaction
            return protocol
        except Exception as error:
            return _problem(error)

    def _scope_source(self) -> str:
        # Worded only when a scope is refused; a partial or a callable object has no qualname.
        return f"the scope of view {getattr(self.view, '__qualname__', repr(self.view))}"

    def _begin(self, request: HttpRequest, key: str) -> StoredResponse | Attempt:
        fingerprint = (self.options.fingerprint or http_request_fingerprint)(request)
        # The default scope function reads only ``request.user``, which a HttpRequest has too.
        scope_function = self.options.scope or cast(
            RequestFunction, idempotency_settings.SCOPE_FUNCTION
        )
        scope = checked_scope(scope_function(request), self._scope_source)
        return begin(
            self.store,
            sender=self.view,
            request=request,
            scope=scope,
            key=key,
            fingerprint=fingerprint,
            method=request.method or "",
            path=request.path,
            lease=self.options.lease or idempotency_settings.LEASE,
            expiry=self.options.expiry or idempotency_settings.EXPIRY,
            retry_after=self.options.retry_after,
            wait=self.options.wait,
        )

    def _protocol(self, attempt: Attempt) -> Protocol:
        # Raised errors (Http404 included) propagate as usual and free the key for a retry.
        with attempt.holding():
            # Resolved before the transaction opens: nothing in it that can run outside it.
            replayed = replayed_header_names(self.options.replayed_headers)
            # The view's writes and the record's completion commit together, or not at all.
            with attempt.transaction() as operation:
                response = yield
                render = getattr(response, "render", None)
                if render is not None:
                    render()  # a TemplateResponse: store what will be sent
                if is_final(response.status_code):
                    response = storable(response)
                    operation.complete(snapshot(response, replayed))
                else:
                    operation.discard()
            if operation.completed:
                return response
            attempt.release()
            return response

    def _settle(
        self,
        protocol: Protocol,
        *,
        response: HttpResponseBase | None = None,
        error: BaseException | None = None,
    ) -> HttpResponseBase:
        """Finish the protocol with the view's response, or its error (re-raised, or a problem)."""
        try:
            if error is not None:
                protocol.throw(error)
            else:
                assert response is not None
                protocol.send(response)
        except StopIteration as finished:
            settled: HttpResponseBase = finished.value
            return settled
        except Exception as raised:
            return _problem(raised)
        raise RuntimeError("the idempotency protocol did not finish")


def _problem(error: Exception) -> HttpResponseBase:
    """Our own problems and database failures as problem responses; anything else re-raised."""
    if isinstance(error, ProblemDetailsError):
        return problem_response(error)
    if isinstance(error, STORAGE_ERRORS):
        return problem_response(storage_unavailable(error))
    if isinstance(error, RequestDataTooBig):
        return problem_response(RequestBodyTooLarge())
    raise error
