"""OpenAPI for idempotent operations, through drf-spectacular.

Imported by ``IdempotencyConfig.ready()`` only when drf-spectacular is installed; importing it
registers :class:`IdempotentViewExtension`. Every operation a view protects then documents

- the ``Idempotency-Key`` request header (required or optional as the view says),
- its 400, 409, 413, 422 and 503 answers as ``application/problem+json`` (the
  ``IdempotencyProblem`` component), next to whatever the view documents for those codes itself,
- unless the view documents a 400 body of its own, the 400 that DRF answers for input the view
  refuses (the ``ValidationErrors`` component, in the view's renderer media types): a protected
  request's 400 is either, and a client (or a schema-driven fuzzer) must expect both;

also on views and methods that carry their own ``@extend_schema``: the extension puts its schema
class outermost, around the one drf-spectacular would use, so it sees the final operation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drf_spectacular.drainage import get_view_method_names, isolate_view_method
from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ComponentRegistry, ResolvedComponent, get_class
from drf_spectacular.utils import OpenApiParameter

from idempotency.conf import idempotency_settings
from idempotency.exceptions import (
    PROBLEM_CONTENT_TYPE,
    IdempotencyKeyInUse,
    IdempotencyKeyInvalid,
    IdempotencyKeyMissing,
    IdempotencyKeyReused,
    IdempotencyLeaseLost,
    ProblemDetailsError,
    RequestBodyInvalid,
    RequestBodyTooLarge,
    StorageUnavailable,
)
from idempotency.mixins import REPLAYED_HEADER

if TYPE_CHECKING:
    from rest_framework.views import APIView

    from idempotency.mixins import IdempotentMixin

PROBLEM_COMPONENT = "IdempotencyProblem"
# The keys idempotency.keys.parse_key takes as they are: visible ASCII without the comma, not
# starting with a quote (that is the structured-field form, which names the same keys).
KEY_PATTERN = r"^[\u0021\u0023-\u002b\u002d-\u007e][\u0021-\u002b\u002d-\u007e]*$"
VALIDATION_ERRORS_COMPONENT = "ValidationErrors"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem details object.",
    "properties": {
        "type": {"type": "string", "format": "uri", "description": "Stable URI of the problem."},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "Machine-readable code (as DRF's)."},
    },
    "required": ["type", "title", "status", "detail"],
}

# What DRF's exception handler renders for a ValidationError, ParseError or the like.
VALIDATION_ERRORS_SCHEMA: dict[str, Any] = {
    "description": "Django REST framework's answer to input the view refused: "
    '`{"field": ["message", ...]}` from a serializer, `{"detail": "message"}` for a body it '
    'could not parse, or `["message", ...]`.',
    "oneOf": [
        {
            "type": "object",
            "properties": {"detail": {"type": "string"}},
            "additionalProperties": {},
        },
        {"type": "array", "items": {"type": "string"}},
    ],
}

RETRY_AFTER: dict[str, Any] = {
    "schema": {"type": "integer", "minimum": 1},
    "description": "Seconds to wait before retrying with the same key.",
}


def _problem_types(*errors: type[ProblemDetailsError]) -> str:
    base = idempotency_settings.PROBLEM_TYPE_BASE
    return ", ".join(f"`{base}{error.problem_type}`" for error in errors)


class IdempotentSchemaMixin(AutoSchema):
    """Adds the key header and the problem answers to each protected operation."""

    def _protects(self) -> bool:
        view: IdempotentMixin = self.view  # type: ignore[assignment]
        return self.method in view.get_idempotency_methods()

    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        if not self._protects():
            return parameters
        view: IdempotentMixin = self.view  # type: ignore[assignment]
        required = view.get_idempotency_required()
        header = OpenApiParameter(
            name=idempotency_settings.HEADER,
            type={
                "type": "string",
                "minLength": 1,
                "maxLength": idempotency_settings.MAX_KEY_LENGTH,
                "pattern": KEY_PATTERN,
            },
            location=OpenApiParameter.HEADER,
            required=required,
            description=(
                "A unique key per operation (a UUID, say); send it again with every retry. "
                "A retry gets the first attempt's stored response, marked "
                f"`{REPLAYED_HEADER}: true`."
                + ("" if required else " Optional: without it the request is not protected.")
            ),
        )
        # First, so a parameter of the same name that the view declares itself wins.
        return [header, *parameters]

    def get_operation(
        self,
        path: str,
        path_regex: str,
        path_prefix: str,
        method: str,
        registry: ComponentRegistry,
    ) -> dict[str, Any] | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None or not self._protects():
            return operation
        problem = _component(registry, PROBLEM_COMPONENT, PROBLEM_SCHEMA)
        responses = operation.setdefault("responses", {})
        bad_request = responses.setdefault("400", {"description": ""})
        if not bad_request.get("content"):
            # The view's own refusal of its input (DRF's error body) comes first, in the media
            # types its renderers produce; a 400 body the view documents itself is kept instead.
            errors = _component(registry, VALIDATION_ERRORS_COMPONENT, VALIDATION_ERRORS_SCHEMA)
            media_types = self.map_renderers("media_type") or ["application/json"]
            bad_request["description"] = " ".join(
                filter(None, [bad_request["description"], "The view refused the input."])
            )
            bad_request["content"] = {media: {"schema": errors.ref} for media in media_types}
        for code, description, extra in self._problem_responses():
            response = responses.setdefault(code, {"description": ""})
            response["description"] = " ".join(filter(None, [response["description"], description]))
            response.setdefault("content", {})[PROBLEM_CONTENT_TYPE] = {"schema": problem.ref}
            if extra:
                response.setdefault("headers", {}).update(extra)
        operation["responses"] = responses = dict(sorted(responses.items(), key=_status))
        for code, response in responses.items():
            if str(code).startswith("2"):
                response.setdefault("headers", {})[REPLAYED_HEADER] = {
                    "schema": {"type": "string", "enum": ["true"]},
                    "description": "Present when this is the stored response of an earlier try.",
                }
        return operation

    def _problem_responses(self) -> list[tuple[str, str, dict[str, Any]]]:
        view: IdempotentMixin = self.view  # type: ignore[assignment]
        bad_key: tuple[type[ProblemDetailsError], ...] = (IdempotencyKeyInvalid,)
        if view.get_idempotency_required():
            bad_key = (IdempotencyKeyMissing, IdempotencyKeyInvalid)
        bad_key = (*bad_key, RequestBodyInvalid)
        retry_after = {"Retry-After": RETRY_AFTER}
        return [
            ("400", f"Idempotency key or body problem: {_problem_types(*bad_key)}.", {}),
            (
                "409",
                "Another request holds this idempotency key, or this one lost it: "
                f"{_problem_types(IdempotencyKeyInUse, IdempotencyLeaseLost)}.",
                retry_after,
            ),
            (
                "413",
                "The request body is larger than the service accepts: "
                f"{_problem_types(RequestBodyTooLarge)}.",
                {},
            ),
            (
                "422",
                "The idempotency key was used for another request: "
                f"{_problem_types(IdempotencyKeyReused)}.",
                {},
            ),
            (
                "503",
                "The database failed during the request; retry with the same key: "
                f"{_problem_types(StorageUnavailable)}.",
                retry_after,
            ),
        ]


def _status(item: tuple[str, Any]) -> str:
    return str(item[0])  # "default" after the codes, as OpenAPI documents list it


def _component(registry: ComponentRegistry, name: str, schema: dict[str, Any]) -> ResolvedComponent:
    """The schema component ``name``, registered unless it already is."""
    component = ResolvedComponent(  # type: ignore[no-untyped-call]
        name=name, type=ResolvedComponent.SCHEMA, object=name, schema=schema
    )
    registry.register_on_missing(component)
    return component


_documented: dict[type[AutoSchema], type[AutoSchema]] = {}


def documented(schema_class: type[AutoSchema]) -> type[AutoSchema]:
    """``schema_class`` with :class:`IdempotentSchemaMixin` outermost (one class per base)."""
    if issubclass(schema_class, IdempotentSchemaMixin):
        return schema_class
    if schema_class not in _documented:
        name = f"Idempotent{schema_class.__name__}"
        _documented[schema_class] = type(name, (IdempotentSchemaMixin, schema_class), {})
    return _documented[schema_class]


class IdempotentViewExtension(OpenApiViewExtension):  # type: ignore[no-untyped-call]
    """Replaces each view using ``IdempotentMixin`` by a subclass whose schemas document it."""

    target_class = "idempotency.mixins.IdempotentMixin"
    match_subclasses = True

    def view_replacement(self) -> type[APIView]:
        view_class: type[APIView] = self.target
        # On the class this is the view's own schema, or an instance of DEFAULT_SCHEMA_CLASS.
        schema_class = get_class(view_class.schema)
        if not issubclass(schema_class, AutoSchema):
            return view_class  # not a drf-spectacular schema: leave the view alone
        attributes = {
            "__module__": view_class.__module__,
            "__qualname__": view_class.__qualname__,
            "__doc__": view_class.__doc__,
            "schema": documented(schema_class)(),
        }
        replacement: type[APIView] = type(view_class.__name__, (view_class,), attributes)
        # Methods annotated with @extend_schema carry a schema class of their own, which
        # drf-spectacular uses instead of the view's: wrap those too, on a copy of the method.
        for name in get_view_method_names(replacement, schema=schema_class):
            method_schema = getattr(getattr(replacement, name), "kwargs", {}).get("schema")
            if method_schema is not None:
                isolated = isolate_view_method(replacement, name)  # type: ignore[no-untyped-call]
                isolated.kwargs["schema"] = documented(get_class(method_schema))
        return replacement
