"""Scopes are checked like keys before they reach the database, the same on every backend:
``run_once(scope=...)``, the mixin's scope hook (``SCOPE_FUNCTION``) and ``@idempotent(scope=...)``.
Run on SQLite (which would store anything) and on PostgreSQL (which would raise DataError)."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import RequestFactory, override_settings
from rest_framework.test import APIRequestFactory

from idempotency.decorators import idempotent
from idempotency.models import IdempotencyRecord
from idempotency.operations import run_once
from idempotency.scopes import MAX_SCOPE_LENGTH, InvalidScope, checked_scope
from tests.testapp.views import Operation, WidgetView

pytestmark = pytest.mark.django_db(transaction=True)

TOO_LONG = "tenant:" + "x" * MAX_SCOPE_LENGTH


def test_a_scope_that_fits_is_returned_as_it_is():
    assert checked_scope("s" * MAX_SCOPE_LENGTH, "here") == "s" * MAX_SCOPE_LENGTH
    assert checked_scope("tenant:Zürich", "here") == "tenant:Zürich"  # any printable text


@pytest.mark.parametrize("scope", ["", TOO_LONG, "a\x00b", "line\nbreak", "\ud800"])
def test_a_scope_no_database_stores_alike_is_refused(scope):
    with pytest.raises(InvalidScope, match="here"):
        checked_scope(scope, "here")


def test_every_control_character_and_lone_surrogate_is_refused_and_nothing_else():
    # checked_scope scans with one pattern; it must name exactly Unicode's Cc and Cs categories.
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        unstorable = unicodedata.category(char) in ("Cc", "Cs")
        try:
            checked_scope(f"user:{char}", "the scope")
        except InvalidScope:
            assert unstorable, hex(code)
        else:
            assert not unstorable, hex(code)


@pytest.mark.parametrize("scope", [None, 42, b"bytes"])
def test_a_scope_that_is_not_text_is_a_type_error(scope):
    with pytest.raises(TypeError, match="here must be a str"):
        checked_scope(scope, "here")


@pytest.mark.parametrize("scope", [TOO_LONG, "nul\x00"])
def test_run_once_refuses_an_unstorable_scope_on_every_backend(scope):
    calls = []
    with pytest.raises(InvalidScope, match=r"run_once\(scope=\.\.\.\)"):
        run_once(lambda: calls.append(1), scope=scope, key="evt-1")
    assert calls == []
    assert IdempotencyRecord.objects.count() == 0


def test_run_once_errors_are_value_errors_for_its_callers():
    with pytest.raises(ValueError):
        run_once(lambda: None, scope=TOO_LONG, key="evt-1")
    with pytest.raises(TypeError):
        run_once(lambda: None, scope=None, key="evt-1")


def test_the_longest_scope_is_stored_and_replayed():
    scope = "s" * MAX_SCOPE_LENGTH
    assert run_once(lambda: 1, scope=scope, key="evt-1") == 1
    assert run_once(lambda: 2, scope=scope, key="evt-1") == 1


def widget_request():
    return APIRequestFactory().post("/", {"name": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="k")


@pytest.mark.parametrize(("scope", "error"), [(TOO_LONG, InvalidScope), (42, TypeError)])
def test_a_bad_scope_from_scope_function_is_a_developer_error(scope, error):
    with (
        override_settings(IDEMPOTENCY={"SCOPE_FUNCTION": lambda request: scope}),
        pytest.raises(error, match="WidgetView.get_idempotency_scope"),
    ):
        WidgetView.as_view()(widget_request())
    assert Operation.calls == 0
    assert IdempotencyRecord.objects.count() == 0


def test_a_bad_scope_from_an_overridden_hook_is_refused_too():
    class TenantView(WidgetView):
        def get_idempotency_scope(self, request):
            return TOO_LONG

    with pytest.raises(InvalidScope, match="TenantView.get_idempotency_scope"):
        TenantView.as_view()(widget_request())
    assert Operation.calls == 0


@pytest.mark.parametrize(("scope", "error"), [(TOO_LONG, InvalidScope), (None, TypeError)])
def test_a_bad_scope_from_the_decorators_scope_function_is_a_developer_error(scope, error):
    @idempotent(scope=lambda request: scope)
    def view(request):
        return HttpResponse(status=201)

    with pytest.raises(error, match="the scope of view"):
        view(RequestFactory().post("/", HTTP_IDEMPOTENCY_KEY="k"))
    assert IdempotencyRecord.objects.count() == 0


def test_an_invalid_scope_is_improperly_configured():
    assert issubclass(InvalidScope, ImproperlyConfigured)
