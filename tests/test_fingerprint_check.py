"""Custom fingerprints are checked before anything is stored, the same on every backend: the
mixin's hook (``FINGERPRINT_FUNCTION``, ``get_idempotency_fingerprint()``) and
``@idempotent(fingerprint=...)``. Run on SQLite (which would store anything) and on PostgreSQL
and MariaDB (which raised DataError, a 500 naming no cause)."""

from __future__ import annotations

import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import RequestFactory, override_settings
from rest_framework.test import APIRequestFactory

from idempotency.decorators import idempotent
from idempotency.fingerprint_check import (
    MAX_FINGERPRINT_LENGTH,
    InvalidFingerprint,
    checked_fingerprint,
)
from idempotency.models import IdempotencyRecord
from tests.testapp.views import Operation, WidgetView

pytestmark = pytest.mark.django_db(transaction=True)

TOO_LONG = "f" * (MAX_FINGERPRINT_LENGTH + 1)


def widget_request():
    return APIRequestFactory().post("/", {"name": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="k")


def test_the_longest_fingerprint_is_stored_and_compared():
    longest = "é" * MAX_FINGERPRINT_LENGTH  # characters, as the column counts them
    with override_settings(IDEMPOTENCY={"FINGERPRINT_FUNCTION": lambda request: longest}):
        assert WidgetView.as_view()(widget_request()).status_code == 201
        replay = WidgetView.as_view()(widget_request())
    assert replay["Idempotent-Replayed"] == "true"
    assert IdempotencyRecord.objects.get().fingerprint == longest
    assert Operation.calls == 1


@pytest.mark.parametrize(
    ("fingerprint", "error"),
    [
        (TOO_LONG, InvalidFingerprint),
        ("", InvalidFingerprint),
        ("nul\x00", InvalidFingerprint),
        ("lone\ud800surrogate", InvalidFingerprint),
        (b"digest", TypeError),
        (None, TypeError),
    ],
)
def test_a_bad_fingerprint_from_fingerprint_function_is_a_developer_error(fingerprint, error):
    with (
        override_settings(IDEMPOTENCY={"FINGERPRINT_FUNCTION": lambda request: fingerprint}),
        pytest.raises(error, match="FINGERPRINT_FUNCTION"),
    ):
        WidgetView.as_view()(widget_request())
    assert Operation.calls == 0
    assert IdempotencyRecord.objects.count() == 0


def test_a_bad_fingerprint_from_an_overridden_hook_is_refused_too():
    class LooseView(WidgetView):
        def get_idempotency_fingerprint(self, request):
            return TOO_LONG

    with pytest.raises(InvalidFingerprint, match="get_idempotency_fingerprint"):
        LooseView.as_view()(widget_request())
    assert Operation.calls == 0
    assert IdempotencyRecord.objects.count() == 0


def test_a_bad_fingerprint_from_the_decorator_is_refused():
    calls = []

    @idempotent(fingerprint=lambda request: TOO_LONG)
    def view(request):
        calls.append(1)
        return HttpResponse(status=201)

    with pytest.raises(InvalidFingerprint, match="idempotent"):
        view(RequestFactory().post("/", HTTP_IDEMPOTENCY_KEY="k"))
    assert calls == []
    assert IdempotencyRecord.objects.count() == 0


def test_an_invalid_fingerprint_is_improperly_configured_and_a_value_error():
    assert issubclass(InvalidFingerprint, ImproperlyConfigured)
    assert issubclass(InvalidFingerprint, ValueError)
    assert checked_fingerprint("a" * 64) == "a" * 64


def test_every_nul_and_lone_surrogate_is_refused_and_nothing_else():
    # Printable ASCII skips the scan; every other character goes through it.
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        unstorable = code == 0 or 0xD800 <= code <= 0xDFFF
        try:
            checked_fingerprint(f"ab{char}")
        except InvalidFingerprint:
            assert unstorable, hex(code)
        else:
            assert not unstorable, hex(code)
