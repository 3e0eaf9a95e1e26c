from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from idempotency.conf import DEFAULTS, idempotency_settings


def test_defaults_apply_without_the_setting():
    with override_settings():
        from django.conf import settings

        del settings.IDEMPOTENCY
        assert idempotency_settings.HEADER == "Idempotency-Key"
        assert frozenset({"POST", "PATCH"}) == idempotency_settings.METHODS
        assert timedelta(hours=24) == idempotency_settings.EXPIRY
        assert timedelta(seconds=60) == idempotency_settings.LEASE
        assert idempotency_settings.MAX_KEY_LENGTH == 255
        assert idempotency_settings.REQUIRED is True


def test_override_then_restore():
    assert timedelta(seconds=60) == idempotency_settings.LEASE
    with override_settings(IDEMPOTENCY={"LEASE": 5}):
        assert timedelta(seconds=5) == idempotency_settings.LEASE
    assert timedelta(seconds=60) == idempotency_settings.LEASE


def test_unknown_key_is_an_error_naming_it():
    with (
        override_settings(IDEMPOTENCY={"LEASES": 5}),
        pytest.raises(ImproperlyConfigured, match="LEASES"),
    ):
        idempotency_settings.LEASE  # noqa: B018


def test_bad_duration_is_an_error_naming_the_key():
    with (
        override_settings(IDEMPOTENCY={"EXPIRY": "1 day"}),
        pytest.raises(ImproperlyConfigured, match="EXPIRY"),
    ):
        idempotency_settings.EXPIRY  # noqa: B018


def test_functions_accept_dotted_paths_and_callables():
    def scope(request):
        return "s"

    with override_settings(IDEMPOTENCY={"SCOPE_FUNCTION": scope}):
        assert idempotency_settings.SCOPE_FUNCTION is scope
    with override_settings(IDEMPOTENCY={"SCOPE_FUNCTION": "idempotency.scopes.user_scope"}):
        from idempotency.scopes import user_scope

        assert idempotency_settings.SCOPE_FUNCTION is user_scope


def test_every_default_is_exposed():
    for key in DEFAULTS:
        getattr(idempotency_settings, key)


def test_a_refused_override_leaves_nothing_behind():
    # The conversion runs on each read after a change; a refused value is never cached.
    with override_settings(IDEMPOTENCY={"METHODS": "POST", "LEASE": 0}):
        with pytest.raises(ImproperlyConfigured, match="METHODS"):
            idempotency_settings.METHODS  # noqa: B018
        with pytest.raises(ImproperlyConfigured, match="LEASE"):
            idempotency_settings.LEASE  # noqa: B018
    with override_settings(IDEMPOTENCY={"METHODS": ["post", "put"], "LEASE": 2.5}):
        assert frozenset({"POST", "PUT"}) == idempotency_settings.METHODS
        assert timedelta(seconds=2.5) == idempotency_settings.LEASE
    assert frozenset({"POST", "PATCH"}) == idempotency_settings.METHODS
    assert timedelta(seconds=60) == idempotency_settings.LEASE


@pytest.mark.parametrize("value", [None, [], "IDEMPOTENCY"])
def test_settings_that_are_not_a_dict_are_refused_on_read(value):
    with override_settings(IDEMPOTENCY=value), pytest.raises(ImproperlyConfigured, match="dict"):
        idempotency_settings.HEADER  # noqa: B018
