"""Hostile review of a528a2a (the per-request Python cut): defects, each as a test.

Each test fails on a528a2a. The docstring of each says whether the defect is a regression of the
commit (passes at 3e9245f, its parent) or older (fails at 3e9245f too).
"""

from __future__ import annotations

import json
from functools import partial

import pytest
from django.http import JsonResponse
from django.test import Client
from django.urls import path
from django.utils.translation import gettext_lazy

from idempotency.decorators import idempotent
from idempotency.models import IdempotencyRecord
from idempotency.scopes import InvalidScope, checked_scope
from tests.testapp.models import Widget

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]


# 1. checked_scope(scope, source): a source that is not a str is now called -----------------
#
# docs/api.md lists ``idempotency.scopes.checked_scope(scope, source)`` as an extension point
# for integrations of one's own; ``source`` was worded by an f-string, so anything that formats
# as text served (Django's lazy translations above all: ``gettext_lazy("the tenant's scope")``).
# a528a2a calls every source that is not a ``str`` instance (``source()``), to word the message
# only on refusal: a lazy string is not a ``str`` and not callable, so a refused scope raises
# ``TypeError: '__proxy__' object is not callable`` instead of ``InvalidScope`` naming the source.
# Regression (3e9245f raises InvalidScope with the text).


class _Where:
    """A source that formats as text, as 3e9245f's f-strings took it."""

    def __str__(self) -> str:
        return "the tenant's scope"


@pytest.mark.parametrize("source", [gettext_lazy("the tenant's scope"), _Where()])
@pytest.mark.parametrize("scope", ["", "nul\x00", "x" * 256])
def test_a_refused_scope_still_names_a_source_that_is_not_a_str(scope, source):
    with pytest.raises(InvalidScope, match="the tenant's scope"):
        checked_scope(scope, source)


# 2. @idempotent on a view callable without __qualname__ --------------------------------------
#
# The decorator accepts any callable that is not a class, and _checked_options words its
# errors with ``getattr(view, "__qualname__", repr(view))``: a functools.partial or an instance
# with __call__ is a view it protects. But _Guard._begin words the scope check's source eagerly,
# on every request, as ``self.view.__qualname__``: AttributeError, a 500 for every keyed
# request to such a view, before anything is reserved. a528a2a made the source lazy for the
# mixin only (the wording is only needed on refusal) and left the decorator's eager and fragile.
# Older than the commit (fails at 3e9245f too).


def _create(request, *, status):
    widget = Widget.objects.create(name="p", size=1)
    return JsonResponse({"id": widget.pk}, status=status)


class _CallableView:
    def __call__(self, request):
        return _create(request, status=201)


urlpatterns = [
    path("partial", idempotent(partial(_create, status=201))),
    path("instance", idempotent(_CallableView())),
]


@pytest.mark.parametrize("url", ["/partial", "/instance"])
def test_a_view_callable_without_a_qualname_is_protected_not_a_500(url):
    client = Client(raise_request_exception=False)
    headers = {"Idempotency-Key": "no-qualname-1"}
    first = client.post(url, "{}", content_type="application/json", headers=headers)
    second = client.post(url, "{}", content_type="application/json", headers=headers)
    assert first.status_code == 201, first.content[:200]
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert json.loads(second.content) == json.loads(first.content)
    assert Widget.objects.count() == 1
    assert IdempotencyRecord.objects.get().state == "completed"
