"""``@idempotent``: the mixin's guarantees for plain Django function views.

Put authentication decorators *outside* it (above it), so a replay only ever goes to a caller
who may make the request now::

    @login_required
    @require_POST
    @idempotent(required=False)
    def checkout(request): ...
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any, cast, overload

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from idempotency.attempts import (
    STORAGE_ERRORS,
    Attempt,
    begin,
    storage_unavailable,
    unprotected_request_transaction,
)
from idempotency.conf import idempotency_settings
from idempotency.exceptions import IdempotencyKeyMissing, ProblemDetailsError, problem_response
from idempotency.fingerprints import http_request_fingerprint
from idempotency.keys import parse_key
from idempotency.options import (
    Duration,
    expiry_after_lease,
    optional_duration,
    optional_flag,
    optional_function,
    optional_header_names,
    optional_methods,
)
from idempotency.responses import replay_response, replayed_header_names, snapshot
from idempotency.scopes import checked_scope
from idempotency.store import RecordStore, StoredResponse

logger = logging.getLogger("idempotency")

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
        options = _checked_options(
            function, methods, required, lease, expiry, replayed_headers, scope, fingerprint, store
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


def _checked_options(
    view: ViewFunction,
    methods: object,
    required: object,
    lease: object,
    expiry: object,
    replayed_headers: object,
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
        scope=optional_function(scope, where("scope")),
        fingerprint=optional_function(fingerprint, where("fingerprint")),
        store=store,
    )


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
        scope = checked_scope(
            scope_function(request), f"the scope of view {self.view.__qualname__}"
        )
        outcome = begin(
            self.store,
            sender=self.view,
            request=request,
            scope=scope,
            key=key,
            fingerprint=fingerprint,
            method=request.method or "",
            path=request.get_full_path(),
            lease=self.options.lease or idempotency_settings.LEASE,
            expiry=self.options.expiry or idempotency_settings.EXPIRY,
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
            with self.store.atomic():
                response = self.view(request, *args, **kwargs)
                render = getattr(response, "render", None)
                if render is not None:
                    render()  # a TemplateResponse: store what will be sent
                if isinstance(response, HttpResponse) and response.status_code < 500:
                    replayed = replayed_header_names(self.options.replayed_headers)
                    attempt.complete(snapshot(response, replayed))
                    return response
                if getattr(response, "streaming", False):
                    logger.warning("idempotency: a streaming response cannot be stored; released")
                transaction.set_rollback(True, using=self.store.using)
            attempt.release()
            return response
