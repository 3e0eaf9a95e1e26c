from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import ResolverMatch
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from idempotency.exceptions import RequestBodyInvalid
from idempotency.fingerprints import canonical, http_request_fingerprint, request_fingerprint

factory = APIRequestFactory()


class MergePatchParser(JSONParser):
    media_type = "application/merge-patch+json"


def fingerprint(body, method="post", path="/payments", content_type="application/json", **kw):
    django_request = getattr(factory, method)(path, body, content_type=content_type, **kw)
    request = Request(
        django_request, parsers=[JSONParser(), MergePatchParser(), FormParser(), MultiPartParser()]
    )
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


def test_an_integer_and_a_float_are_different_numbers():
    # The view sees int 1 or float 1.0: different values (and different JSON when stored).
    assert fingerprint('{"a": 1}') != fingerprint('{"a": 1.0}')
    assert fingerprint('{"a": 0.0}') != fingerprint('{"a": -0.0}')


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
    assert canonical(float("inf")) == ["f", "inf"]
    assert canonical(Decimal("NaN")) == ["d", "NaN"]


def test_user_data_spelled_like_a_tag_is_not_the_tagged_value():
    assert fingerprint('{"amount": 0.01}') != fingerprint('{"amount": {"number": "0.01"}}')
    assert fingerprint('{"amount": 0.01}') != fingerprint('{"amount": ["f", "0.01"]}')
    assert canonical(Decimal("0.01")) != canonical(["d", "0.01"])
    assert canonical({1: "a"}) != canonical({"1": "a"})
    assert canonical([["a"]]) != canonical(["a"])


def test_the_media_type_is_part_of_it():
    form = "application/x-www-form-urlencoded"
    assert fingerprint("name=a", content_type=form) != fingerprint('{"name": ["a"]}')
    assert fingerprint("{}") != fingerprint("{}", content_type="application/merge-patch+json")
    # Parameters do not change what the view parses (a multipart boundary differs every time).
    assert fingerprint("{}") == fingerprint("{}", content_type="application/json; charset=utf-8")


def test_a_lone_surrogate_is_refused_as_an_invalid_body():
    with pytest.raises(RequestBodyInvalid):
        fingerprint('{"\\udb9d": 1}')
    with pytest.raises(RequestBodyInvalid):
        http_fingerprint('{"ok": "\\ud800"}')


def test_route_arguments_that_are_not_json_are_encoded_by_value():
    def with_kwargs(path, kwargs):
        django_request = factory.post(path, "{}", content_type="application/json")
        django_request.resolver_match = ResolverMatch(
            func=lambda r: None, args=(), kwargs=kwargs, route="o/<x:ref>/"
        )
        return request_fingerprint(Request(django_request, parsers=[JSONParser()]))

    ref = uuid.UUID("3f2c8a1e-0d4b-4c52-9a51-6f0e2b7c9d10")
    assert with_kwargs("/o/a/", {"ref": ref}) == with_kwargs("/o/b/", {"ref": uuid.UUID(str(ref))})
    assert with_kwargs("/o/a/", {"ref": ref}) != with_kwargs("/o/a/", {"ref": str(ref)})
    assert with_kwargs("/o/a/", {"ref": date(2026, 1, 1)}) != with_kwargs(
        "/o/a/", {"ref": date(2026, 1, 2)}
    )


class Opaque:
    """No __eq__, no __repr__: its default repr holds its address."""


def test_an_opaque_route_argument_is_named_by_its_path_not_its_address():
    def with_opaque(path):
        django_request = factory.post(path, "{}", content_type="application/json")
        django_request.resolver_match = ResolverMatch(
            func=lambda r: None, args=(), kwargs={"ref": Opaque()}, route="o/<x:ref>/"
        )
        return request_fingerprint(Request(django_request, parsers=[JSONParser()]))

    assert with_opaque("/o/acct_1/") == with_opaque("/o/acct_1/")
    assert with_opaque("/o/acct_1/") != with_opaque("/o/acct_2/")


def http_fingerprint(body, content_type="application/json", path="/plain/widgets/"):
    return http_request_fingerprint(factory.post(path, body, content_type=content_type))


def test_plain_views_keep_each_numbers_exact_text():
    assert http_fingerprint('{"a": 0.1}') != http_fingerprint('{"a": 0.10000000000000001}')
    assert http_fingerprint('{"a": 0.1}') != http_fingerprint('{"a": 0.10}')
    assert http_fingerprint('{"a": 1}') != http_fingerprint('{"a": 1.0}')
    assert http_fingerprint('{"a": 1e400}') != http_fingerprint('{"a": 1e401}')  # both inf
    assert http_fingerprint('{"a": 0.1, "b": 2}') == http_fingerprint('{ "b":2,"a" : 0.1 }')


def test_plain_views_hash_what_is_not_json_by_bytes_and_charset():
    text = "text/plain; charset=utf-8"
    assert http_fingerprint("abc", text) == http_fingerprint("abc", text)
    assert http_fingerprint("abc", text) != http_fingerprint("abd", text)
    assert http_fingerprint("abc", text) != http_fingerprint("abc", "text/plain; charset=latin-1")
    assert http_fingerprint("{not json", "application/json") != http_fingerprint("{not json", text)
