"""The drf-spectacular integration: what each protected operation documents."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("drf_spectacular")

from django.test import override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from drf_spectacular.generators import SchemaGenerator  # noqa: E402
from drf_spectacular.openapi import AutoSchema  # noqa: E402
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema  # noqa: E402
from drf_spectacular.validation import validate_schema  # noqa: E402
from rest_framework import generics, serializers, viewsets  # noqa: E402
from rest_framework.decorators import action  # noqa: E402
from rest_framework.permissions import AllowAny  # noqa: E402
from rest_framework.renderers import JSONRenderer  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.routers import SimpleRouter  # noqa: E402

from idempotency.contrib.drf_spectacular import KEY_PATTERN, IdempotentSchemaMixin  # noqa: E402
from idempotency.exceptions import IdempotencyKeyInvalid  # noqa: E402
from idempotency.keys import parse_key  # noqa: E402
from idempotency.mixins import IdempotentMixin  # noqa: E402

pytestmark = pytest.mark.spectacular

PROBLEM = "application/problem+json"


class ThingSerializer(serializers.Serializer):
    name = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    errors = serializers.DictField()


class ThingView(IdempotentMixin, generics.GenericAPIView):
    """Make a thing."""

    serializer_class = ThingSerializer

    def get(self, request):
        return Response({})

    def post(self, request):
        return Response({}, status=201)

    def put(self, request):
        return Response({})


class ValidatingView(ThingView):
    """Refuses input as most views do: through its serializer."""

    permission_classes = [AllowAny]

    def post(self, request):
        serializer = ThingSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(serializer.data, status=201)


class VendorJSONRenderer(JSONRenderer):
    media_type = "application/vnd.things+json"


class VendorMediaTypeView(ThingView):
    renderer_classes = [JSONRenderer, VendorJSONRenderer]


class OptionalKeyView(ThingView):
    idempotency_required = False


class PutOnlyView(ThingView):
    idempotency_methods = ["PUT"]


@extend_schema(tags=["decorated"], responses={201: ThingSerializer, 400: ErrorSerializer})
class ClassDecoratedView(ThingView):
    pass


class MethodDecoratedView(ThingView):
    @extend_schema(
        parameters=[OpenApiParameter("X-Trace", str, OpenApiParameter.HEADER)],
        responses={202: ThingSerializer, 409: OpenApiResponse(description="Business conflict.")},
    )
    def post(self, request):
        return Response({}, status=202)

    @extend_schema(exclude=True)
    def put(self, request):
        return Response({})


@extend_schema(tags=["both"])
class ClassAndMethodDecoratedView(ThingView):
    @extend_schema(summary="Post it.")
    def post(self, request):
        return Response({}, status=201)


class CustomSchema(AutoSchema):
    def get_tags(self):
        return ["custom"]


class CustomSchemaView(ThingView):
    schema = CustomSchema()

    @extend_schema(description="Custom and decorated.")
    def post(self, request):
        return Response({}, status=201)


class OwnHeaderView(ThingView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "Idempotency-Key", str, OpenApiParameter.HEADER, description="Our own words."
            )
        ]
    )
    def post(self, request):
        return Response({}, status=201)


class ThingViewSet(IdempotentMixin, viewsets.GenericViewSet):
    serializer_class = ThingSerializer

    def create(self, request):
        return Response({}, status=201)

    def update(self, request, pk=None):
        return Response({})

    @extend_schema(request=None, responses={200: ThingSerializer})
    @action(detail=False, methods=["post"], idempotency_required=False)
    def ping(self, request):
        return Response({})


router = SimpleRouter()
router.register("set", ThingViewSet, basename="thing")

urlpatterns = [
    path("things/", ThingView.as_view()),
    path("validating/", ValidatingView.as_view()),
    path("vendor/", VendorMediaTypeView.as_view()),
    path("optional/", OptionalKeyView.as_view()),
    path("put-only/", PutOnlyView.as_view()),
    path("class-decorated/", ClassDecoratedView.as_view()),
    path("method-decorated/", MethodDecoratedView.as_view()),
    path("both/", ClassAndMethodDecoratedView.as_view()),
    path("custom/", CustomSchemaView.as_view()),
    path("own-header/", OwnHeaderView.as_view()),
    *router.urls,
]


def schema():
    result = SchemaGenerator(patterns=urlpatterns).get_schema(request=None, public=True)
    validate_schema(result)
    return result


def header(operation, name="Idempotency-Key"):
    found = [p for p in operation.get("parameters", []) if (p["in"], p["name"]) == ("header", name)]
    return found[0] if found else None


def assert_documented(operation, required=True):
    parameter = header(operation)
    assert parameter is not None
    assert parameter.get("required", False) is required
    assert parameter["schema"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": KEY_PATTERN,
    }
    for code in ("400", "409", "413", "422", "503"):
        content = operation["responses"][code]["content"]
        assert content[PROBLEM]["schema"] == {"$ref": "#/components/schemas/IdempotencyProblem"}
    assert "Retry-After" in operation["responses"]["409"]["headers"]
    assert "Retry-After" in operation["responses"]["503"]["headers"]


def assert_not_documented(operation):
    assert header(operation) is None
    for code in ("400", "409", "413", "422", "503"):
        assert code not in operation["responses"]


@pytest.fixture(scope="module")
def paths():
    return schema()["paths"]


def test_protected_methods_document_the_header_and_the_problems(paths):
    assert_documented(paths["/things/"]["post"])


def test_unprotected_methods_document_nothing_of_it(paths):
    assert_not_documented(paths["/things/"]["get"])
    assert_not_documented(paths["/things/"]["put"])


def test_an_optional_key_is_documented_as_optional(paths):
    operation = paths["/optional/"]["post"]
    assert_documented(operation, required=False)
    # Without a required key, a missing key is no error: only an invalid one is.
    assert "key-missing" not in operation["responses"]["400"]["description"]
    assert "key-invalid" in operation["responses"]["400"]["description"]


def test_the_protected_methods_follow_the_view(paths):
    assert_documented(paths["/put-only/"]["put"])
    assert_not_documented(paths["/put-only/"]["post"])


def test_responses_are_listed_by_status(paths):
    codes = list(paths["/things/"]["post"]["responses"])
    assert codes == sorted(codes)
    assert {"200", "400", "409", "413", "422", "503"} <= set(codes)


@given(st.from_regex(KEY_PATTERN, fullmatch=True).filter(lambda key: len(key) <= 255))
def test_every_key_the_documented_pattern_allows_is_taken_as_is(key):
    assert parse_key(key, 255) == key


@given(st.text(st.characters(codec="latin-1"), max_size=20))
def test_every_unquoted_key_taken_as_is_matches_the_documented_pattern(raw):
    try:
        key = parse_key(raw, 255)
    except IdempotencyKeyInvalid:
        return
    if key == raw:
        assert re.fullmatch(KEY_PATTERN, raw)


def test_problem_types_are_named_with_their_uris(paths):
    responses = paths["/things/"]["post"]["responses"]
    assert "urn:django-idempotency:problem:key-missing" in responses["400"]["description"]
    assert "urn:django-idempotency:problem:request-in-progress" in responses["409"]["description"]
    assert "urn:django-idempotency:problem:key-reused" in responses["422"]["description"]


def test_success_responses_document_the_replay_header(paths):
    headers = paths["/things/"]["post"]["responses"]["200"]["headers"]
    assert headers["Idempotent-Replayed"]["schema"] == {"type": "string", "enum": ["true"]}


def test_a_protected_400_is_the_views_refusal_or_our_problem(paths):
    bad_request = paths["/things/"]["post"]["responses"]["400"]
    assert bad_request["content"] == {
        "application/json": {"schema": {"$ref": "#/components/schemas/ValidationErrors"}},
        PROBLEM: {"schema": {"$ref": "#/components/schemas/IdempotencyProblem"}},
    }
    assert "refused the input" in bad_request["description"]
    assert "key-missing" in bad_request["description"]


def test_the_views_refusal_is_documented_in_each_media_type_it_renders(paths):
    content = paths["/vendor/"]["post"]["responses"]["400"]["content"]
    assert set(content) == {"application/json", "application/vnd.things+json", PROBLEM}


def test_the_413_and_503_problems_are_named_with_their_uris(paths):
    responses = paths["/things/"]["post"]["responses"]
    assert "urn:django-idempotency:problem:body-too-large" in responses["413"]["description"]
    assert "urn:django-idempotency:problem:storage-unavailable" in responses["503"]["description"]


def test_class_level_extend_schema_keeps_its_own_answers_beside_ours(paths):
    operation = paths["/class-decorated/"]["post"]
    assert_documented(operation)
    assert operation["tags"] == ["decorated"]
    content = operation["responses"]["400"]["content"]
    # The view documents its own 400 body: ours stands beside it, DRF's generic one does not.
    assert set(content) == {"application/json", PROBLEM}
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_method_level_extend_schema_keeps_its_parameters_and_responses(paths):
    operation = paths["/method-decorated/"]["post"]
    assert_documented(operation)
    assert header(operation, "X-Trace") is not None
    assert "202" in operation["responses"]
    assert operation["responses"]["409"]["description"].startswith("Business conflict.")
    assert "put" not in paths["/method-decorated/"]  # exclude=True still excludes


def test_class_and_method_annotations_together(paths):
    operation = paths["/both/"]["post"]
    assert_documented(operation)
    assert operation["tags"] == ["both"]
    assert operation["summary"] == "Post it."


def test_a_custom_schema_class_on_the_view_is_kept(paths):
    operation = paths["/custom/"]["post"]
    assert_documented(operation)
    assert operation["tags"] == ["custom"]
    assert operation["description"] == "Custom and decorated."


def test_a_header_the_view_declares_itself_wins(paths):
    assert header(paths["/own-header/"]["post"])["description"] == "Our own words."


def test_viewset_actions_follow_their_own_settings(paths):
    assert_documented(paths["/set/"]["post"])
    assert_documented(paths["/set/ping/"]["post"], required=False)
    assert_not_documented(paths["/set/{id}/"]["put"])


def test_the_problem_component_is_registered_once():
    component = schema()["components"]["schemas"]["IdempotencyProblem"]
    assert component["required"] == ["type", "title", "status", "detail"]


def _validator(document, name):
    """A validator for the component ``name`` of ``document`` (OpenAPI 3.0 is close enough)."""
    import jsonschema

    component = document["components"]["schemas"][name]
    return jsonschema.Draft7Validator({**component, "components": document["components"]})


@pytest.mark.django_db
@pytest.mark.urls("tests.test_drf_spectacular")
@pytest.mark.parametrize(
    ("headers", "body", "media_type", "component"),
    [
        # Refused by the view's serializer: DRF's body, in JSON.
        ({"Idempotency-Key": "k-400"}, {"name": ["not", "a", "string"]}, "application/json",
         "ValidationErrors"),
        ({"Idempotency-Key": "k-400"}, [1, 2], "application/json", "ValidationErrors"),
        # Refused by the mixin: our problem.
        ({}, {"name": "a"}, PROBLEM, "IdempotencyProblem"),
        ({"Idempotency-Key": "a,b"}, {"name": "a"}, PROBLEM, "IdempotencyProblem"),
    ],
)  # fmt: skip
def test_each_documented_400_body_is_what_the_view_answers(
    api, headers, body, media_type, component
):
    document = schema()
    documented = document["paths"]["/validating/"]["post"]["responses"]["400"]["content"]
    response = api.post("/validating/", body, format="json", headers=headers)
    assert response.status_code == 400
    assert response["Content-Type"].split(";")[0] == media_type
    assert documented[media_type]["schema"]["$ref"].endswith(f"/{component}")
    _validator(document, component).validate(json.loads(response.content))


@pytest.mark.django_db
@pytest.mark.urls("tests.test_drf_spectacular")
def test_a_malformed_body_answers_the_documented_400(api):
    document = schema()
    response = api.post(
        "/validating/", b"{", content_type="application/json", headers={"Idempotency-Key": "k"}
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    _validator(document, "ValidationErrors").validate(json.loads(response.content))


def test_the_header_name_and_problem_base_follow_settings():
    settings = {"HEADER": "X-Request-Key", "PROBLEM_TYPE_BASE": "https://example.com/problems/"}
    with override_settings(IDEMPOTENCY=settings):
        operation = schema()["paths"]["/things/"]["post"]
    assert header(operation) is None
    assert header(operation, "X-Request-Key")["required"] is True
    assert "https://example.com/problems/key-reused" in operation["responses"]["422"]["description"]


def test_the_original_views_are_left_untouched():
    schema()
    assert not isinstance(ThingView.schema, IdempotentSchemaMixin)
    method_schema = MethodDecoratedView.post.kwargs["schema"]
    assert not issubclass(method_schema, IdempotentSchemaMixin)
    assert "post" in MethodDecoratedView.__dict__
