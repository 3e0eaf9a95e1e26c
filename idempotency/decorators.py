"""``@idempotent``: the mixin's guarantees for plain Django function views.

Put authentication decorators *outside* it (above it), so a replay only ever goes to a caller
who may make the request now::

    @login_required
    @require_POST
    @idempotent(required=False)
    def checkout(request): ...
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any, cast, overload

from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import HttpRequest
from django.http.response import HttpResponseBase

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
from idempotency.keys import parse_key
from idempotency.outcomes import is_final
from idempotency.responses import replay_response, replayed_header_names, snapshot, storable
from idempotency.store import RecordStore, StoredResponse

ViewFunction = Callable[..., HttpResponseBase]
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
    lease: timedelta | None = None,
    expiry: timedelta | None = None,
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
    lease: timedelta | None = None,
    expiry: timedelta | None = None,
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
        if inspect.iscoroutinefunction(function):
            raise TypeError(
                f"@idempotent cannot protect the async view {function.__qualname__}: it would "
                "answer a coroutine. Protect a sync view, or a DRF view with IdempotentMixin."
            )
        options = IdempotentViewOptions(
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

        @wraps(function)
        def protected(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            guard = _Guard(options, options.store or RecordStore())
            return guard(request, *args, **kwargs)

        protected.idempotency = options  # type: ignore[attr-defined]
        # The reservation commits on its own before the view runs, so ATOMIC_REQUESTS must not
        # wrap it; _Guard restores that transaction for requests it does not protect.
        using = (store or RecordStore()).using
        return transaction.non_atomic_requests(using=using)(protected)

    return decorate if view is None else decorate(view)


class _Guard:
    """One request through a protected view."""

    def __init__(self, options: IdempotentViewOptions, store: RecordStore) -> None:
        self.view = options.view
        self.options = options
        self.store = store

    def __call__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        methods = self.options.methods
        protected = idempotency_settings.METHODS if methods is None else methods
        if (request.method or "").upper() not in {method.upper() for method in protected}:
            return self._unprotected(request, *args, **kwargs)
        try:
            return self._run(request, *args, **kwargs)
        except ProblemDetailsError as error:
            return problem_response(error)
        except STORAGE_ERRORS as error:
            return problem_response(storage_unavailable(error))
        except RequestDataTooBig:
            return problem_response(RequestBodyTooLarge())

    def _unprotected(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        with unprotected_request_transaction(self.store.using):
            return self.view(request, *args, **kwargs)

    def _run(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        raw = request.headers.get(idempotency_settings.HEADER)
        if raw is None:
            required = self.options.required
            if idempotency_settings.REQUIRED if required is None else required:
                raise IdempotencyKeyMissing()
            return self._unprotected(request, *args, **kwargs)
        key = parse_key(raw, idempotency_settings.MAX_KEY_LENGTH)
        fingerprint = (self.options.fingerprint or http_request_fingerprint)(request)
        # The default scope function reads only ``request.user``, which a HttpRequest has too.
        scope_function = self.options.scope or cast(
            RequestFunction, idempotency_settings.SCOPE_FUNCTION
        )
        scope = scope_function(request)
        outcome = begin(
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
        if isinstance(outcome, StoredResponse):
            return replay_response(outcome)
        return self._run_reserved(request, outcome, args, kwargs)

    def _run_reserved(
        self,
        request: HttpRequest,
        attempt: Attempt,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> HttpResponseBase:
        # Raised errors (Http404 included) propagate as usual and free the key for a retry.
        with attempt.holding():
            # The view's writes and the record's completion commit together, or not at all.
            with attempt.transaction() as operation:
                response = self.view(request, *args, **kwargs)
                render = getattr(response, "render", None)
                if render is not None:
                    render()  # a TemplateResponse: store what will be sent
                if is_final(response.status_code):
                    response = storable(response)
                    replayed = replayed_header_names(self.options.replayed_headers)
                    operation.complete(snapshot(response, replayed))
                else:
                    operation.discard()
            if operation.completed:
                return response
            attempt.release()
            return response
