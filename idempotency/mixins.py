"""``IdempotentMixin``: run an unsafe request once per key, replay its outcome to retries."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from contextlib import suppress
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase
from rest_framework.request import Request

from idempotency import options
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
from idempotency.keys import header_value, parse_key
from idempotency.options import Duration
from idempotency.outcomes import RELEASING_EXCEPTIONS, is_final
from idempotency.responses import (
    REPLAYED_HEADER,
    replay_response,
    replayed_header_names,
    snapshot,
    storable,
)
from idempotency.scopes import checked_scope
from idempotency.store import LeaseLostError, RecordStore, StoredResponse

if TYPE_CHECKING:
    from rest_framework.views import APIView

    _Base = APIView
else:
    _Base = object

__all__ = ["REPLAYED_HEADER", "RELEASING_EXCEPTIONS", "IdempotentMixin"]

logger = logging.getLogger("idempotency")

Handler = Callable[..., HttpResponseBase]


class IdempotentMixin(_Base):
    """Protect a DRF view's unsafe methods with an ``Idempotency-Key``.

    Put it before the DRF base class: ``class PaymentViewSet(IdempotentMixin, ModelViewSet)``.
    Each ``idempotency_*`` attribute left at ``None`` falls back to ``settings.IDEMPOTENCY``;
    viewset actions may set them through ``@action(..., idempotency_required=False)``.
    """

    idempotency_methods: Collection[str] | None = None
    idempotency_required: bool | None = None
    idempotency_lease: Duration | None = None
    idempotency_expiry: Duration | None = None
    idempotency_replayed_headers: Collection[str] | None = None
    idempotency_retry_after: Duration | None = None
    idempotency_wait: Duration | None = None
    # The store (and through it the clock); tests swap in ``RecordStore(clock=...)``.
    idempotency_store: RecordStore | None = None
    # Not settings: set on the instance during a protected request, before the operation runs,
    # to the key it holds and the scope it was reserved in (None without a key). Derive the key
    # for the next hop from them, e.g. an upstream payment API's own idempotency key.
    idempotency_key: str | None = None
    idempotency_scope: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._check_idempotency_options({})  # refused when the class is defined

    @classmethod
    # Typed Any so one override fits both APIView.as_view(**initkwargs) and
    # ViewSetMixin.as_view(actions, **initkwargs): subclasses type-check without ignores.
    def as_view(cls, *args: Any, **initkwargs: Any) -> Any:
        cls._check_idempotency_options(initkwargs)
        view = super().as_view(*args, **initkwargs)
        # The mixin commits the reservation on its own, before the operation, so a request-wide
        # transaction (ATOMIC_REQUESTS) must not wrap it; dispatch() restores that transaction
        # for the requests the mixin does not protect.
        return transaction.non_atomic_requests(using=cls._idempotency_database())(view)

    @classmethod
    def _check_idempotency_options(cls, initkwargs: dict[str, Any]) -> None:
        """Refuse bad ``idempotency_*`` values of the class, or given to ``as_view()`` (which is
        where ``@action(..., idempotency_lease=...)`` arrives), before any request runs."""
        view = cls.__qualname__

        def where(name: str) -> str:
            if name in initkwargs:
                return f"{name}=... given to {view}.as_view() or its @action()"
            return f"{view}.{name}"

        values = {name: getattr(cls, name) for name in options.VIEW_ATTRIBUTES}
        # A property computes its value per request: its hook converts what it returns.
        values = {name: value for name, value in values.items() if not isinstance(value, property)}
        options.view_attributes(view, {**values, **initkwargs}, where)

    @classmethod
    def _idempotency_database(cls) -> str:
        return (cls.idempotency_store or RecordStore()).using

    # Hooks, one job each ------------------------------------------------------------------

    # Each hook converts its attribute as the setting is converted (options), so a value set
    # after the class was defined (an instance attribute, a test's patch) is checked too.

    def _idempotency_where(self, name: str) -> str:
        return f"{type(self).__qualname__}.{name}"

    def get_idempotency_methods(self) -> frozenset[str]:
        if self.idempotency_methods is None:
            return idempotency_settings.METHODS
        return options.methods(
            self.idempotency_methods, self._idempotency_where("idempotency_methods")
        )

    def get_idempotency_required(self) -> bool:
        if self.idempotency_required is None:
            return idempotency_settings.REQUIRED
        return options.flag(
            self.idempotency_required, self._idempotency_where("idempotency_required")
        )

    def get_idempotency_lease(self) -> timedelta:
        if self.idempotency_lease is None:
            return idempotency_settings.LEASE
        return options.duration(
            self.idempotency_lease, self._idempotency_where("idempotency_lease")
        )

    def get_idempotency_expiry(self) -> timedelta:
        if self.idempotency_expiry is None:
            return idempotency_settings.EXPIRY
        return options.duration(
            self.idempotency_expiry, self._idempotency_where("idempotency_expiry")
        )

    def get_idempotency_retry_after(self) -> timedelta:
        """The ``Retry-After`` hint of a 409 (bounded by the holder's lease, at least 1 s)."""
        if self.idempotency_retry_after is None:
            return idempotency_settings.RETRY_AFTER
        return options.duration(
            self.idempotency_retry_after, self._idempotency_where("idempotency_retry_after")
        )

    def get_idempotency_wait(self) -> timedelta:
        """How long a duplicate waits for the holder's outcome before its 409 (0: not at all)."""
        if self.idempotency_wait is None:
            return idempotency_settings.WAIT
        return options.wait_duration(
            self.idempotency_wait, self._idempotency_where("idempotency_wait")
        )

    def get_idempotency_replayed_headers(self) -> frozenset[str]:
        where = self._idempotency_where("idempotency_replayed_headers")
        return replayed_header_names(
            options.optional_header_names(self.idempotency_replayed_headers, where)
        )

    def get_idempotency_store(self) -> RecordStore:
        return self.idempotency_store or RecordStore()

    def get_idempotency_key(self, request: Request) -> str | None:
        """The key sent with ``request``, ``None`` if absent; raises if malformed."""
        raw = header_value(request, idempotency_settings.HEADER)
        if raw is None:
            return None
        return parse_key(raw, idempotency_settings.MAX_KEY_LENGTH)

    def get_idempotency_scope(self, request: Request) -> str:
        return idempotency_settings.SCOPE_FUNCTION(request)

    def _checked_idempotency_scope(self, request: Request) -> str:
        """The scope, refused (as a developer error) where the database could not store it."""
        return checked_scope(self.get_idempotency_scope(request), self._scope_source)

    def _scope_source(self) -> str:
        return (
            f"the scope {type(self).__qualname__}.get_idempotency_scope() returned "
            "(by default, settings.IDEMPOTENCY['SCOPE_FUNCTION'])"
        )

    def get_idempotency_fingerprint(self, request: Request) -> str:
        return idempotency_settings.FINGERPRINT_FUNCTION(request)

    def should_store_idempotent_response(
        self, response: HttpResponseBase, exception: Exception | None
    ) -> bool:
        """Whether this outcome is final (stored and replayed) or the key is released.

        The default is the rule every entry point shares (:func:`idempotency.outcomes.is_final`).
        """
        return is_final(response.status_code, exception)

    def check_idempotent_replay_permissions(self, request: Request) -> None:
        """Run before a stored outcome is replayed: may this caller still see it?

        Authentication, permission and throttle checks ran already. On a view that targets one
        object (a ``GenericAPIView`` route with its lookup argument, a detail ``@action``), the
        object's permissions are checked again through ``get_object()`` (one query), so a caller
        whose access was revoked is refused (403) instead of replayed. A 404 from the lookup
        replays: the operation may have moved or removed the object (a rename, a delete), and
        the stored outcome goes only to the caller who made it. Override it to check more, or
        to skip the query where object permissions cannot change.
        """
        if request.method == "DELETE":
            return  # the operation removed the object: there is nothing left to look up
        get_object = getattr(self, "get_object", None)
        lookup = getattr(self, "lookup_url_kwarg", None) or getattr(self, "lookup_field", None)
        if get_object is not None and lookup in self.kwargs:
            # In a transaction of its own: a get_queryset() that locks (select_for_update) needs
            # one, and the request holds none here.
            with suppress(Http404), self.get_idempotency_store().atomic():
                get_object()

    # The request cycle --------------------------------------------------------------------

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        # Mirrors APIView.dispatch, with the handler run through the key when it is protected.
        if not self._protects(request):
            return self._dispatch_unprotected(request, *args, **kwargs)
        self.args = args
        self.kwargs = kwargs
        drf_request = self.initialize_request(request, *args, **kwargs)
        self.request = drf_request
        self.headers = self.default_response_headers
        try:
            # Authentication, permissions and throttles first: a replay only ever goes to a
            # caller who may make this request now.
            self.initial(drf_request, *args, **kwargs)
            response = self._run_idempotently(drf_request, self._handler(drf_request))
        except Exception as exc:
            if isinstance(exc, STORAGE_ERRORS):
                # Reached after the attempt released the key (or found nothing to release).
                exc = storage_unavailable(exc)
            elif isinstance(exc, RequestDataTooBig):
                # Django's 400 page would do; a JSON client is better told what went wrong.
                exc = RequestBodyTooLarge()
            response = self._final(drf_request, self.handle_exception(exc))
        self.response = response  # type: ignore[assignment]
        return response

    def _protects(self, request: HttpRequest) -> bool:
        """Whether this request goes through the key; every other one runs as without us.

        A method the view does not implement answers DRF's 405 (with ``Allow``), and a keyless
        request where the key is optional keeps the transaction Django would give it.
        """
        method = (request.method or "").upper()
        # HEAD runs the GET handler: where GET is protected, so is HEAD.
        checked = "GET" if method == "HEAD" else method
        if checked not in self.get_idempotency_methods():
            return False
        if self._handler_for(method) == self.http_method_not_allowed:
            return False
        # Where the key is optional, a keyless request is told apart by the header alone.
        return (
            self.get_idempotency_required()
            or header_value(request, idempotency_settings.HEADER) is not None
        )

    # DRF types these as Response; at run time any HttpResponse passes (finalize_response asserts
    # HttpResponseBase). Problems are plain HttpResponses so no negotiated renderer reformats them.
    def handle_exception(self, exc: Exception) -> HttpResponseBase:  # type: ignore[override]
        if isinstance(exc, ProblemDetailsError):
            return problem_response(exc)
        return super().handle_exception(exc)

    def _dispatch_unprotected(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        with unprotected_request_transaction(self._idempotency_database()):
            return super().dispatch(request, *args, **kwargs)

    def _handler(self, request: Request) -> Handler:
        return self._handler_for(_read_from(request).method or "")

    def _handler_for(self, method: str) -> Handler:
        if method.lower() in self.http_method_names:
            handler: Handler = getattr(self, method.lower(), self.http_method_not_allowed)
            return handler
        return self.http_method_not_allowed

    def _run_idempotently(self, request: Request, handler: Handler) -> HttpResponseBase:
        if handler == self.http_method_not_allowed:
            # No operation to protect: 405 with Allow, whatever the key (or its absence) says.
            return self._final(request, handler(request, *self.args, **self.kwargs))
        key = self.get_idempotency_key(request)
        if key is None:
            raise IdempotencyKeyMissing()
        django_request = _read_from(request)
        # The fingerprint parses the body: malformed input fails here, before anything is stored.
        _refuse_oversized_body(request, django_request)
        fingerprint = self.get_idempotency_fingerprint(request)
        store = self.get_idempotency_store()
        scope = self._checked_idempotency_scope(request)
        self.idempotency_key, self.idempotency_scope = key, scope
        outcome = begin(
            store,
            sender=type(self),
            request=request._request,
            scope=scope,
            key=key,
            fingerprint=fingerprint,
            method=django_request.method or "",
            path=django_request.path,
            lease=self.get_idempotency_lease(),
            expiry=self.get_idempotency_expiry(),
            retry_after=self.get_idempotency_retry_after(),
            wait=self.get_idempotency_wait(),
            before_replay=partial(self.check_idempotent_replay_permissions, request),
        )
        if isinstance(outcome, StoredResponse):
            return self._final(request, replay_response(outcome))
        return self._run_reserved(request, handler, outcome)

    def _run_reserved(
        self, request: Request, handler: Handler, attempt: Attempt
    ) -> HttpResponseBase:
        with attempt.holding():
            # Resolved before the transaction opens: inside it runs only what must commit with
            # the operation's writes (the operation, rendering, the snapshot, the completion).
            replayed = self.get_idempotency_replayed_headers()
            try:
                # The operation's writes and the record's completion commit together, or not
                # at all: a fenced-out attempt (LeaseLostError) leaves nothing behind.
                with attempt.transaction() as operation:
                    response = self._final(request, handler(request, *self.args, **self.kwargs))
                    if self.should_store_idempotent_response(response, None):
                        response = storable(response)
                        operation.complete(snapshot(response, replayed))
                    else:
                        operation.discard()
                if operation.completed:
                    return response
            except LeaseLostError:
                raise
            except Exception as exc:
                # The operation raised: its writes are rolled back. An API error (404, 409, ...)
                # is still its final outcome; refusals and crashes free the key.
                response = self._final(request, self.handle_exception(exc))
                if self.should_store_idempotent_response(response, exc):
                    outcome = snapshot(storable(response), replayed)
                    with attempt.transaction() as operation:  # the completion alone
                        operation.complete(outcome)
                    return response
            attempt.release()
            return response

    def _final(self, request: Request, response: HttpResponseBase) -> HttpResponseBase:
        """Finalize and render, so the body can be stored before the response leaves."""
        response = self.finalize_response(
            request,
            response,  # type: ignore[arg-type]
            *self.args,
            **self.kwargs,
        )
        render = getattr(response, "render", None)
        if render is not None:
            render()
        return response


def _read_from(request: Request) -> Request | HttpRequest:
    """Where the method, path and ``META`` are read: from the ``HttpRequest`` itself when DRF's
    ``Request`` only proxies them (each read through its proxy costs a failed lookup and a
    ``__getattr__`` call); as DRF reads them from a subclass, or from a request whose method
    was set on it (``override_method``, a view's ``initial()``), which may answer otherwise."""
    if type(request) is Request and "method" not in request.__dict__:
        return request._request
    return request


def _refuse_oversized_body(request: Request, django_request: Request | HttpRequest) -> None:
    """Refuse a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` before the fingerprint parses it.

    Django checks the limit when a body is read whole, but DRF before 3.17.2 parses JSON from
    the stream and never reads it whole. File uploads (multipart) are exempt, as in Django.
    """
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is None:
        return
    try:
        length = int(django_request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return  # Django's own parsing will refuse it
    # The media type only for a body over the limit: most bodies are not.
    if length > limit and not request.content_type.startswith("multipart/"):
        raise RequestBodyTooLarge()
