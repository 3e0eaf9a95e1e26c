from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import ResolverMatch
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from idempotency.fingerprints import canonical, request_fingerprint

factory = APIRequestFactory()


def fingerprint(body, method="post", path="/payments", content_type="application/json", **kw):
    django_request = getattr(factory, method)(path, body, content_type=content_type, **kw)
    request = Request(django_request, parsers=[JSONParser(), FormParser(), MultiPartParser()])
    return request_fingerprint(request)


def test_same_json_in_other_key_order_and_whitespace_is_equal():
    assert fingerprint('{"a": 1, "b": [1, 2]}') == fingerprint('{ "b":[1,2],\n"a":1 }')


def test_escapes_do_not_matter():
    assert fingerprint('{"name": "caf\\u00e9"}') == fingerprint('{"name": "café"}')


@pytest.mark.parametrize(
    "other",
    ['{"a": 2}', '{"a": "1"}', '{"a": 1, "b": null}', '{"a": [1]}', '{"a": 1.5}', "{}"],
)
def test_any_value_change_changes_it(other):
    assert fingerprint('{"a": 1}') != fingerprint(other)


def test_integral_float_equals_the_integer():
    assert fingerprint('{"a": 1}') == fingerprint('{"a": 1.0}')


def test_method_and_path_change_it():
    body = '{"a": 1}'
    assert fingerprint(body) != fingerprint(body, method="patch")
    assert fingerprint(body) != fingerprint(body, path="/orders")


def test_query_string_changes_it():
    assert fingerprint("{}", path="/p?x=1") != fingerprint("{}", path="/p?x=2")
    assert fingerprint("{}", path="/p?x=1&y=2") == fingerprint("{}", path="/p?y=2&x=1")


def test_resolved_route_is_used_when_present():
    def with_route(path, route, kwargs):
        django_request = factory.post(path, "{}", content_type="application/json")
        django_request.resolver_match = ResolverMatch(
            func=lambda r: None, args=(), kwargs=kwargs, route=route
        )
        return request_fingerprint(Request(django_request, parsers=[JSONParser()]))

    assert with_route("/payments", "payments/?", {}) == with_route("/payments/", "payments/?", {})
    assert with_route("/o/1", "o/<int:pk>", {"pk": 1}) != with_route(
        "/o/2", "o/<int:pk>", {"pk": 2}
    )


def test_form_data_keeps_repeated_values():
    form = "application/x-www-form-urlencoded"
    assert fingerprint("a=1&a=2", content_type=form) != fingerprint("a=1", content_type=form)
    assert fingerprint("a=1&b=2", content_type=form) == fingerprint("b=2&a=1", content_type=form)


def test_uploaded_files_are_hashed_by_content():
    assert canonical(SimpleUploadedFile("f.txt", b"one")) != canonical(
        SimpleUploadedFile("f.txt", b"two")
    )
    upload = SimpleUploadedFile("f.txt", b"one")
    canonical(upload)
    assert upload.read() == b"one"  # rewound for the view


def test_non_finite_numbers_do_not_crash():
    assert canonical(float("inf")) == {"number": "inf"}
