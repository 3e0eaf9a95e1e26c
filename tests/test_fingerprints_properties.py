"""Fingerprints, property-based: one per operation, whatever the JSON's spelling.

Equal for the same document written with another key order, other whitespace or other escapes;
different when any value, the method or the route differs. Requests go through DRF's parser and
Django's URL resolver, as in a view.
"""

from __future__ import annotations

import json
import uuid
from datetime import date
from decimal import Decimal

from django.urls import resolve
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from idempotency.fingerprints import (
    canonical,
    hash_document,
    http_request_fingerprint,
    request_fingerprint,
)

# Modest example counts keep CI quick; no example database is written into the tree.
PROPERTY = settings(max_examples=200, deadline=None, database=None)

factory = APIRequestFactory()

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
documents = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
objects = st.dictionaries(st.text(max_size=8), documents, min_size=1, max_size=5)
methods = st.sampled_from(["post", "patch", "put"])


def fingerprint(body, method="post", path="/test/widgets"):
    django_request = getattr(factory, method)(path, body, content_type="application/json")
    django_request.resolver_match = resolve(path)
    return request_fingerprint(Request(django_request, parsers=[JSONParser()]))


def same_json(a, b):
    """Equality of what the view sees: typed, so 1 != 1.0, true != 1 and "1" != 1 (unlike
    Python's ==), and floats by their text, so 0.0 != -0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def shuffled(value, draw):
    """The same document with every object's keys in an order drawn by Hypothesis."""
    if isinstance(value, dict):
        order = draw(st.permutations(list(value)))
        return {key: shuffled(value[key], draw) for key in order}
    if isinstance(value, list):
        return [shuffled(item, draw) for item in value]
    return value


def leaf_paths(value, path=()):
    """Paths to every scalar and every empty container in ``value``."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from leaf_paths(item, (*path, key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from leaf_paths(item, (*path, index))
    else:
        yield path


def replaced(value, path, new):
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


@PROPERTY
@given(document=objects, data=st.data())
def test_key_order_whitespace_and_escapes_do_not_matter(document, data):
    original = json.dumps(document)
    respelled = json.dumps(
        shuffled(document, data.draw),
        ensure_ascii=data.draw(st.booleans(), label="ensure_ascii"),
        indent=data.draw(st.none() | st.integers(0, 4) | st.just("\t"), label="indent"),
        separators=data.draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\r\n ")])),
    )
    assert fingerprint(original) == fingerprint(respelled)


@PROPERTY
@given(document=objects, data=st.data())
def test_any_changed_value_changes_it(document, data):
    path = data.draw(st.sampled_from(list(leaf_paths(document))), label="path")
    old = document
    for step in path:
        old = old[step]
    new = data.draw(documents, label="new value")
    assume(not same_json(old, new))
    assert fingerprint(json.dumps(document)) != fingerprint(
        json.dumps(replaced(document, path, new))
    )


@PROPERTY
@given(document=objects, data=st.data())
def test_an_added_or_removed_member_changes_it(document, data):
    extra = data.draw(st.text(max_size=8).filter(lambda key: key not in document), label="key")
    grown = {**document, extra: data.draw(documents, label="value")}
    assert fingerprint(json.dumps(document)) != fingerprint(json.dumps(grown))


@PROPERTY
@given(document=objects, methods=st.lists(methods, min_size=2, max_size=2, unique=True))
def test_another_method_changes_it(document, methods):
    body = json.dumps(document)
    first, second = methods
    assert fingerprint(body, method=first) != fingerprint(body, method=second)


ROUTES = ["/test/widgets", "/test/other-widgets/", "/test/optional-widgets/", "/test/widgets/1/"]


@PROPERTY
@given(
    document=objects,
    paths=st.lists(
        st.sampled_from(ROUTES) | st.integers(0, 10**6).map(lambda n: f"/test/widgets/{n}/"),
        min_size=2,
        max_size=2,
        unique=True,
    ),
)
def test_another_route_or_route_argument_changes_it(document, paths):
    body = json.dumps(document)
    first, second = paths
    assert fingerprint(body, path=first) != fingerprint(body, path=second)


@PROPERTY
@given(document=objects)
def test_one_route_spelled_with_or_without_its_trailing_slash_is_one_route(document):
    body = json.dumps(document)
    assert fingerprint(body, path="/test/widgets") == fingerprint(body, path="/test/widgets/")


# Equal exactly when equal -------------------------------------------------------------------
# Drawn from a small alphabet, two documents are often equal or nearly so, and their strings
# often spell the tags and shapes of the encoding itself: fingerprints must tell them apart.

confusable_scalars = (
    st.none()
    | st.booleans()
    | st.sampled_from([0, 1, -1, 2**53, 2**64])
    | st.sampled_from([0.0, -0.0, 1.0, 0.01, 0.1, 1e300])
    | st.sampled_from(["", "l", "f", "n", "d", "i", "m", "set", "0.01", "1", "number", "null"])
)
confusable_documents = st.recursive(
    confusable_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["", "a", "l", "number", "1"]), children, max_size=3)
    ),
    max_leaves=6,
)
confusable_objects = st.dictionaries(st.sampled_from(["a", "b", "f"]), confusable_documents)


@st.composite
def pair(draw, objects, leaves):
    """Two documents: independent, or the second the first with one leaf drawn anew."""
    first = draw(objects)
    if draw(st.booleans(), label="independent"):
        return first, draw(objects)
    path = draw(st.sampled_from(list(leaf_paths(first))), label="path")
    return first, replaced(first, path, draw(leaves, label="leaf"))


@PROPERTY
@given(documents=pair(confusable_objects, confusable_scalars))
# The collisions a reviewer found, always tried first.
@example(documents=({"a": 0.01}, {"a": {"number": "0.01"}}))
@example(documents=({"a": 1}, {"a": 1.0}))
@example(documents=({"a": 0.0}, {"a": -0.0}))
def test_fingerprints_are_equal_exactly_when_the_parsed_bodies_are(documents):
    first, second = documents
    equal = fingerprint(json.dumps(first)) == fingerprint(json.dumps(second))
    assert equal == same_json(first, second)


# Plain views: numbers by their exact text ----------------------------------------------------


class Number(str):
    """A JSON number's text, written into the body as is."""


def to_json(value):
    if isinstance(value, Number):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(to_json(item) for item in value) + "]"
    return json.dumps(value)


def same_text_json(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_text_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_text_json(x, y) for x, y in zip(a, b, strict=True))
    return a == b


number_texts = st.sampled_from(
    ["0", "-0", "1", "1.0", "1e0", "1E0", "0.1", "0.10", "0.10000000000000001", "1e400", "1e401"]
).map(Number)
text_documents = st.recursive(
    st.none() | st.booleans() | number_texts | st.sampled_from(["", "n", "0.1", "1"]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "n", "1"]), children, max_size=3)
    ),
    max_leaves=6,
)
text_objects = st.dictionaries(st.sampled_from(["a", "b"]), number_texts | text_documents)


def plain_fingerprint(body, path="/plain/widgets/"):
    django_request = factory.post(path, body, content_type="application/json")
    return http_request_fingerprint(django_request)


@PROPERTY
@given(documents=pair(text_objects, number_texts))
@example(documents=({"a": Number("0.1")}, {"a": Number("0.10000000000000001")}))
def test_plain_fingerprints_are_equal_exactly_when_the_bodies_and_number_texts_are(documents):
    first, second = documents
    equal = plain_fingerprint(to_json(first)) == plain_fingerprint(to_json(second))
    assert equal == same_text_json(first, second)


@PROPERTY
@given(document=text_objects, data=st.data())
def test_plain_fingerprints_ignore_key_order_and_whitespace(document, data):
    respelled = to_json(shuffled(document, data.draw)).replace(", ", " ,\n ")
    assert plain_fingerprint(to_json(document)) == plain_fingerprint(respelled)


# Consumer payloads: Python values, by value ----------------------------------------------------

hashables = st.sampled_from([0, 1, 2, "", "a", "l", "set"]) | st.tuples(
    st.sampled_from([0, "a"]), st.sampled_from([1, "l"])
)
payload_scalars = (
    confusable_scalars
    | st.sampled_from([Decimal("1"), Decimal("1.0"), Decimal("-0"), Decimal("NaN")])
    | st.sampled_from([date(2026, 1, 1), date(2026, 1, 2), uuid.UUID(int=1), b"", b"a"])
)
payloads = st.recursive(
    payload_scalars | st.sets(hashables, max_size=3) | st.frozensets(hashables, max_size=3),
    lambda children: (
        st.lists(children, max_size=3)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(hashables, children, max_size=3)
    ),
    max_leaves=6,
)


def same_payload(a, b):
    """Typed equality, with the documented identifications: a tuple is a list, a frozenset a
    set; a Decimal by its text (1.0 is not 1.00) and a float by its repr."""
    a = list(a) if isinstance(a, tuple) else set(a) if isinstance(a, frozenset) else a
    b = list(b) if isinstance(b, tuple) else set(b) if isinstance(b, frozenset) else b
    if type(a) is not type(b):
        return False
    if isinstance(a, float | Decimal):
        return str(a) == str(b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_payload(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_payload(a[k], b[k]) for k in a)
    return a == b  # sets of ints, strings and tuples of them: == is typed there


@PROPERTY
@given(documents=pair(payloads, payload_scalars))
@example(documents=(frozenset({"a", "l", "set"}), {"set", "l", "a"}))
@example(documents=({1: "a"}, {"1": "a"}))
@example(documents=(Decimal("1"), 1))
def test_payload_fingerprints_are_equal_exactly_when_the_payloads_are(documents):
    first, second = documents
    equal = hash_document(canonical(first)) == hash_document(canonical(second))
    assert equal == same_payload(first, second)
