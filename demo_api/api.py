"""The demo API's shared conventions: routes with or without a slash, strict JSON input, ids."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from django.contrib.auth.models import AnonymousUser
from django.core.validators import ProhibitNullCharactersValidator
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers
from rest_framework.exceptions import NotAuthenticated, NotFound
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.routers import SimpleRouter
from rest_framework.validators import ProhibitSurrogateCharactersValidator

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class OptionalSlashRouter(SimpleRouter):
    """``/payments`` and ``/payments/`` both resolve, with no redirect (a POST body survives).

    An id is anything up to the next slash: DRF's default also stops at a dot (for format
    suffixes, which this API has none of), and ``/orders/a.b`` would then miss the route and get
    Django's HTML 404 page instead of the API's JSON one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"

    def get_lookup_regex(self, viewset: Any, lookup_prefix: str = "") -> str:
        lookup_field = getattr(viewset, "lookup_field", "pk")
        kwarg = getattr(viewset, "lookup_url_kwarg", None) or lookup_field
        value = getattr(viewset, "lookup_value_regex", "[^/]+")
        return f"(?P<{lookup_prefix}{kwarg}>{value})"


class StrictPageNumberPagination(PageNumberPagination):
    """``?page=`` is one page number or absent; anything else is DRF's 404 ``Invalid page.``.

    DRF reads a blank ``?page=`` as page 1, takes the last of repeated ``page`` parameters, and
    ``last`` for the last page: input the schema (an integer, at least 1) does not allow, which
    a client should hear about rather than get some page.
    """

    last_page_strings = ()

    def get_page_number(self, request: Request, paginator: Any) -> Any:
        numbers = request.query_params.getlist(self.page_query_param)
        if len(numbers) > 1 or (numbers and not re.fullmatch(r"[0-9]+", numbers[0])):
            raise NotFound(self.invalid_page_message.format(page_number=numbers[-1], message=""))
        return super().get_page_number(request, paginator)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"] = {**parameter["schema"], "minimum": 1}
        return parameters


Handler = TypeVar("Handler", bound=Callable[..., Any])


def documented(
    *,
    request: type[serializers.BaseSerializer[Any]],
    response: type[serializers.BaseSerializer[Any]],
) -> Callable[[Handler], Handler]:
    """Tell drf-spectacular, when it is installed, that the body sent and the body answered
    differ (``PaymentRequestSerializer`` in, ``PaymentSerializer`` out); nothing otherwise."""
    try:
        from drf_spectacular.utils import extend_schema
    except ImportError:
        return lambda handler: handler
    documents: Callable[[Handler], Handler] = extend_schema(
        request=request, responses={201: response}
    )
    return documents


def caller(request: Request) -> User:
    """The authenticated user behind ``request`` (the views require one)."""
    user = request.user
    if isinstance(user, AnonymousUser):
        raise NotAuthenticated()
    return user


def new_public_id(prefix: str) -> str:
    """An opaque, unguessable id such as ``pmt_3f9a...``: never the database's sequence."""
    return f"{prefix}_{secrets.token_hex(12)}"


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer and nothing else: ``"100"``, ``100.0``, ``1.5`` and ``true`` are refused.

    Amounts and quantities are exact: guessing what a string or a float meant is how a
    retry with a "same-looking" body ends up meaning something else.
    """

    default_error_messages = {"invalid": _("A JSON integer is required.")}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictSerializer(serializers.Serializer[Any]):
    """Refuses fields it does not know, so a misspelt field is an error, not a silent default."""

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: [_("Unknown field.")] for name in unknown})
        return value


class TextLookupField(serializers.SlugRelatedField[Any]):
    """A ``SlugRelatedField`` whose validators check the text sent, before the lookup.

    Text the database cannot compare (NUL, which PostgreSQL refuses, or a lone surrogate, which
    no UTF-8 encoder takes) is a 400 from the field, never a database error; the validators
    given (a length, a pattern) also refuse text that names nothing, and drf-spectacular
    documents them in the schema.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators = [
            ProhibitNullCharactersValidator(),
            ProhibitSurrogateCharactersValidator(),
            *self.validators,
        ]

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            super().run_validators(data)
        return super().to_internal_value(data)

    def run_validators(self, value: Any) -> None:
        """Nothing: they ran on the text in ``to_internal_value``; ``value`` is the object."""


class TextLookupMixin:
    """A detail route whose id holds NUL (``/products/%00``) is a 404, not a database error.

    PostgreSQL refuses NUL in text, so no row can match; a lone surrogate never reaches the
    view (Django keeps bytes that are not UTF-8 percent-encoded in the path).
    """

    lookup_field: str
    lookup_url_kwarg: str | None
    kwargs: dict[str, Any]

    def get_object(self) -> Any:
        value = self.kwargs.get(self.lookup_url_kwarg or self.lookup_field)
        if isinstance(value, str) and "\x00" in value:
            raise NotFound()
        return super().get_object()  # type: ignore[misc]
