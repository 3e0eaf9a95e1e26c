"""``IdempotentMixin``: run an unsafe request once per key, replay its outcome to retries."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from rest_framework.exceptions import ParseError, UnsupportedMediaType, ValidationError
from rest_framework.request import Request

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
from idempotency.keys import parse_key
from idempotency.responses import REPLAYED_HEADER, replay_response, replayed_header_names, snapshot
from idempotency.store import LeaseLostError, RecordStore, StoredResponse

if TYPE_CHECKING:
    from rest_framework.views import APIView

    _Base = APIView
else:
    _Base = object

__all__ = ["REPLAYED_HEADER", "RELEASING_EXCEPTIONS", "IdempotentMixin"]

logger = logging.getLogger("idempotency")

# Raised by the operation, these mean "the request was refused as sent": the key stays free so
# the corrected request can use it, as Stripe does for requests that fail validation.
RELEASING_EXCEPTIONS: tuple[type[Exception], ...] = (
    ValidationError,
    ParseError,
    UnsupportedMediaType,
)

Handler = Callable[..., HttpResponseBase]


class IdempotentMixin(_Base):
    """Protect a DRF view's unsafe methods with an ``Idempotency-Key``.

    Put it before the DRF base class: ``class PaymentViewSet(IdempotentMixin, ModelViewSet)``.
    Each ``idempotency_*`` attribute left at ``None`` falls back to ``settings.IDEMPOTENCY``;
    viewset actions may set them through ``@action(..., idempotency_required=False)``.
    """

    idempotency_methods: Collection[str] | None = None
    idempotency_required: bool | None = None
    idempotency_lease: timedelta | None = None
    idempotency_expiry: timedelta | None = None
    idempotency_replayed_headers: Collection[str] | None = None
    # The store (and through it the clock); tests swap in ``RecordStore(clock=...)``.
    idempotency_store: RecordStore | None = None
    # Not settings: set on the instance during a protected request, before the operation runs,
    # to the key it holds and the scope it was reserved in (None without a key). Derive the key
    # for the next hop from them, e.g. an upstream payment API's own idempotency key.
    idempotency_key: str | None = None
    idempotency_scope: str | None = None

    @classmethod
    # Typed Any so one override fits both APIView.as_view(**initkwargs) and
    # ViewSetMixin.as_view(actions, **initkwargs): subclasses type-check without ignores.
    def as_view(cls, *args: Any, **initkwargs: Any) -> Any:
        view = super().as_view(*args, **initkwargs)
        # The mixin commits the reservation on its own, before the operation, so a request-wide
        # transaction (ATOMIC_REQUESTS) must not wrap it; dispatch() restores that transaction
        # for the requests the mixin does not protect.
        return transaction.non_atomic_requests(using=cls._idempotency_database())(view)

    @classmethod
    def _idempotency_database(cls) -> str:
        return (cls.idempotency_store or RecordStore()).using

    # Hooks, one job each ------------------------------------------------------------------

    def get_idempotency_methods(self) -> frozenset[str]:
        if self.idempotency_methods is None:
            return idempotency_settings.METHODS
        return frozenset(method.upper() for method in self.idempotency_methods)

    def get_idempotency_required(self) -> bool:
        if self.idempotency_required is None:
            return idempotency_settings.REQUIRED
        return self.idempotency_required

    def get_idempotency_lease(self) -> timedelta:
        return self.idempotency_lease or idempotency_settings.LEASE

    def get_idempotency_expiry(self) -> timedelta:
        return self.idempotency_expiry or idempotency_settings.EXPIRY

    def get_idempotency_replayed_headers(self) -> frozenset[str]:
        return replayed_header_names(self.idempotency_replayed_headers)

    def get_idempotency_store(self) -> RecordStore:
        return self.idempotency_store or RecordStore()

    def get_idempotency_key(self, request: Request) -> str | None:
        """The key sent with ``request``, ``None`` if absent; raises if malformed."""
        raw = request.headers.get(idempotency_settings.HEADER)
        if raw is None:
            return None
        return parse_key(raw, idempotency_settings.MAX_KEY_LENGTH)

    def get_idempotency_scope(self, request: Request) -> str:
        return idempotency_settings.SCOPE_FUNCTION(request)

    def get_idempotency_fingerprint(self, request: Request) -> str:
        return idempotency_settings.FINGERPRINT_FUNCTION(request)

    def should_store_idempotent_response(
        self, response: HttpResponseBase, exception: Exception | None
    ) -> bool:
        """Whether this outcome is final (stored and replayed) or the key is released."""
        if isinstance(exception, RELEASING_EXCEPTIONS):
            return False
        if getattr(response, "streaming", False):
            logger.warning("idempotency: a streaming response cannot be stored; key released")
            return False
        return response.status_code < 500

    # The request cycle --------------------------------------------------------------------

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        # Mirrors APIView.dispatch, with the handler run through the key when it is protected.
        method = (request.method or "").upper()
        if method not in self.get_idempotency_methods():
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
        method = (request.method or "").lower()
        if method in self.http_method_names:
            handler: Handler = getattr(self, method, self.http_method_not_allowed)
            return handler
        return self.http_method_not_allowed

    def _run_idempotently(self, request: Request, handler: Handler) -> HttpResponseBase:
        if handler == self.http_method_not_allowed:
            # No operation to protect: 405 with Allow, whatever the key (or its absence) says.
            return self._final(request, handler(request, *self.args, **self.kwargs))
        key = self.get_idempotency_key(request)
        if key is None:
            if self.get_idempotency_required():
                raise IdempotencyKeyMissing()
            return self._final(request, handler(request, *self.args, **self.kwargs))
        # The fingerprint parses the body: malformed input fails here, before anything is stored.
        _refuse_oversized_body(request)
        fingerprint = self.get_idempotency_fingerprint(request)
        store = self.get_idempotency_store()
        scope = self.get_idempotency_scope(request)
        self.idempotency_key, self.idempotency_scope = key, scope
        outcome = begin(
            store,
            sender=type(self),
            request=request._request,
            scope=scope,
            key=key,
            fingerprint=fingerprint,
            method=request.method or "",
            path=request.get_full_path(),
            lease=self.get_idempotency_lease(),
            expiry=self.get_idempotency_expiry(),
        )
        if isinstance(outcome, StoredResponse):
            return self._final(request, replay_response(outcome))
        return self._run_reserved(request, handler, outcome)

    def _run_reserved(
        self, request: Request, handler: Handler, attempt: Attempt
    ) -> HttpResponseBase:
        with attempt.holding():
            try:
                # The operation's writes and the record's completion commit together, or not
                # at all: a fenced-out attempt (LeaseLostError) leaves nothing behind.
                with attempt.store.atomic():
                    response = self._final(request, handler(request, *self.args, **self.kwargs))
                    if self.should_store_idempotent_response(response, None):
                        attempt.complete(self._snapshot(response))
                        return response
                    transaction.set_rollback(True, using=attempt.store.using)
            except LeaseLostError:
                raise
            except Exception as exc:
                # The operation raised: its writes are rolled back. An API error (404, 409, ...)
                # is still its final outcome; validation errors and crashes free the key.
                response = self._final(request, self.handle_exception(exc))
                if self.should_store_idempotent_response(response, exc):
                    with attempt.store.atomic():
                        attempt.complete(self._snapshot(response))
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

    def _snapshot(self, response: HttpResponseBase) -> StoredResponse:
        assert isinstance(response, HttpResponse)
        return snapshot(response, self.get_idempotency_replayed_headers())


def _refuse_oversized_body(request: Request) -> None:
    """Refuse a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` before the fingerprint parses it.

    Django checks the limit when a body is read whole, but DRF before 3.17.2 parses JSON from
    the stream and never reads it whole. File uploads (multipart) are exempt, as in Django.
    """
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is None or request.content_type.startswith("multipart/"):
        return
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return  # Django's own parsing will refuse it
    if length > limit:
        raise RequestBodyTooLarge()
