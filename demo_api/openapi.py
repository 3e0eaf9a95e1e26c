"""The demo's OpenAPI schema class: DRF's own error answers, documented where they happen.

drf-spectacular documents what a view returns, not what DRF answers around it: 401 without a
valid token, 404 for an unknown id or a page past the end, 406 for an ``Accept`` the view cannot
render, 415 for a body in a media type it cannot parse; nor what the HTTP server answers before
Django runs (gunicorn's 414 and 431, in HTML, for a request over its limits). A client (or
schemathesis) reading the schema must expect them. The library
(``idempotency.contrib.drf_spectacular``) adds its own answers to protected operations on top.
Loaded only when drf-spectacular is installed (``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]``).
"""

from __future__ import annotations

from typing import Any

from django.core.validators import ProhibitNullCharactersValidator, RegexValidator
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ComponentRegistry, ResolvedComponent, force_instance
from rest_framework.fields import Field
from rest_framework.serializers import BaseSerializer

from demo_api.api import StrictSerializer

ERROR_COMPONENT = "ErrorDetail"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "DRF's error body.",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}


# DRF's CharField (and the demo's lookups) refuse NUL, which PostgreSQL cannot store.
NO_NUL_PATTERN = r"^[^\u0000]*$"


class DemoAutoSchema(AutoSchema):
    def _map_serializer_field(
        self, field: Field[Any, Any, Any, Any], direction: str, bypass_extensions: bool = False
    ) -> dict[str, Any]:
        schema: dict[str, Any] = super()._map_serializer_field(  # type: ignore[no-untyped-call]
            field, direction, bypass_extensions
        )
        kinds = {type(validator) for validator in field.validators}
        # A pattern of the field's own (drf-spectacular documents it later) says more.
        if (
            direction == "request"
            and schema.get("type") == "string"
            and ProhibitNullCharactersValidator in kinds
            and not any(issubclass(kind, RegexValidator) for kind in kinds)
        ):
            schema.setdefault("pattern", NO_NUL_PATTERN)
        return schema

    def _map_basic_serializer(
        self, serializer: BaseSerializer[Any], direction: str
    ) -> dict[str, Any]:
        schema: dict[str, Any] = super()._map_basic_serializer(  # type: ignore[no-untyped-call]
            serializer, direction
        )
        if direction == "request" and isinstance(serializer, StrictSerializer):
            schema["additionalProperties"] = False  # it refuses fields it does not know
        return schema

    def get_operation(
        self,
        path: str,
        path_regex: str,
        path_prefix: str,
        method: str,
        registry: ComponentRegistry,
    ) -> dict[str, Any] | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        error = ResolvedComponent(  # type: ignore[no-untyped-call]
            name=ERROR_COMPONENT, type=ResolvedComponent.SCHEMA, object=ERROR_COMPONENT
        )
        error.schema = ERROR_SCHEMA
        registry.register_on_missing(error)
        responses = operation.setdefault("responses", {})
        media_types = self.map_renderers("media_type") or ["application/json"]
        for code, description, headers in self._drf_answers(operation):
            if code in responses:
                continue  # the view documents it itself
            response: dict[str, Any] = {
                "description": description,
                "content": {media: {"schema": error.ref} for media in media_types},
            }
            if headers:
                response["headers"] = headers
            responses[code] = response
        for code, response in self._server_answers().items():
            responses.setdefault(code, response)
        operation["responses"] = dict(sorted(responses.items(), key=lambda item: str(item[0])))
        self._link_to_created(operation)
        return operation

    def _link_to_created(self, operation: dict[str, Any]) -> None:
        """An OpenAPI link from a create's 201 to the retrieve of what it made.

        Clients (and schemathesis's stateful phase) follow it: ``POST /payments`` answers
        ``paymentId``, which ``GET /payments/{payment_id}`` takes.
        """
        created = operation["responses"].get("201")
        if created is None or not self._is_create_operation() or not hasattr(self.view, "retrieve"):
            return
        serializers = self.get_response_serializers()
        if isinstance(serializers, dict):
            serializers = serializers.get(201, serializers.get("201"))
        if serializers is None:
            return
        lookup = getattr(self.view, "lookup_field", "pk")
        fields = force_instance(serializers).fields  # type: ignore[no-untyped-call]
        field = next((name for name, value in fields.items() if value.source == lookup), None)
        if field is None:
            return
        kwarg = getattr(self.view, "lookup_url_kwarg", None) or lookup
        retrieve = operation["operationId"].removesuffix("_create") + "_retrieve"
        created["links"] = {
            retrieve: {"operationId": retrieve, "parameters": {kwarg: f"$response.body#/{field}"}}
        }

    def _drf_answers(self, operation: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        answers: list[tuple[str, str, dict[str, Any]]] = []
        security = operation.get("security", [])
        if security and {} not in security:
            answers.append(
                (
                    "401",
                    "No valid credentials: send `Authorization: Token <token>`.",
                    {"WWW-Authenticate": {"schema": {"type": "string"}}},
                )
            )
        if "{" in self.path:
            answers.append(("404", "No such object, or not yours.", {}))
        elif (
            self.method == "GET"
            and self._is_list_view()
            and getattr(self.view, "pagination_class", None)
        ):
            answers.append(("404", "No such page (`Invalid page.`).", {}))
        answers.append(("406", "The `Accept` header names no media type this view renders.", {}))
        if "requestBody" in operation:
            answers.append(("415", "The body's media type is not one this view parses.", {}))
        return answers

    def _server_answers(self) -> dict[str, dict[str, Any]]:
        """What the HTTP server answers before Django sees the request (gunicorn, in HTML)."""
        html = {"text/html": {"schema": {"type": "string"}}}
        return {
            "414": {"description": "The URL is longer than the server takes.", "content": html},
            "431": {"description": "A header is larger than the server takes.", "content": html},
        }
