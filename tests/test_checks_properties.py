"""Property: no value in any setting makes a check crash, and the checks and the settings agree.

``manage.py check`` is where a project learns what it got wrong; a check that raises hides every
other message. Each setting (and ``IDEMPOTENCY`` itself) is fed arbitrary values.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.checks import ERROR, CheckMessage
from django.core.checks.registry import registry
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idempotency.conf import DEFAULTS, idempotency_settings

IDEMPOTENCY_CHECKS = [
    check
    for check in registry.get_checks(include_deployment_checks=True)
    if check.__module__ == "idempotency.checks"
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()
    | st.fractions()
    | st.decimals()
    | st.text(max_size=300)
    | st.binary(max_size=20)
    | st.timedeltas()
    | st.sampled_from(
        [
            object(),
            print,
            "POST",
            "post",
            "Set-Cookie",
            "idempotency.scopes.user_scope",
            "idempotency.conf.SETTING_NAME",
            "no.such.module",
            "",
            timedelta.max,
            timedelta.min,
            timedelta(0),
        ]
    )
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.frozensets(st.text(max_size=8) | st.integers(), max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=3)
    ),
    max_leaves=6,
)

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_idempotency_checks() -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    for check in IDEMPOTENCY_CHECKS:
        result = check(app_configs=None, databases=None)
        assert all(isinstance(message, CheckMessage) for message in result)
        messages.extend(result)
    return messages


@pytest.mark.parametrize("key", list(DEFAULTS))
@PROPERTY
@given(value=values)
@override_settings(ROOT_URLCONF="tests.check_urls")
def test_no_value_of_a_setting_crashes_a_check(key, value):
    with override_settings(IDEMPOTENCY={key: value}):
        messages = run_idempotency_checks()
        if not any(message.level >= ERROR for message in messages):
            # What the checks let through, the library can read.
            getattr(idempotency_settings, key)


@PROPERTY
@given(setting=values)
def test_no_idempotency_value_crashes_a_check(setting):
    with override_settings(IDEMPOTENCY=setting):
        messages = run_idempotency_checks()
    # Refused, unless it is a dict of known keys (each checked by the test above).
    assert messages or (isinstance(setting, dict) and set(setting) <= set(DEFAULTS))
