"""Fingerprints, property-based: one per operation, whatever the JSON's spelling.

Equal for the same document written with another key order, other whitespace or other escapes;
different when any value, the method or the route differs. Requests go through DRF's parser and
Django's URL resolver, as in a view.
"""

from __future__ import annotations

import json
from fractions import Fraction

from django.urls import resolve
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from idempotency.fingerprints import request_fingerprint

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
    """JSON equality: 1 == 1.0, but true != 1 and "1" != 1 (unlike Python's ==)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return Fraction(a) == Fraction(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


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
