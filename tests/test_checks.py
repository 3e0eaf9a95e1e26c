"""System checks: each ID, its message and hint, and each once through ``manage.py check``."""

from __future__ import annotations

import math
from contextlib import contextmanager
from datetime import timedelta
from io import StringIO

import pytest
from django.core.checks import Error, Warning
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.test import override_settings

from idempotency import checks
from idempotency.checks import (
    MESSAGES,
    check_lease_outlives_requests,
    check_row_locks,
    check_settings,
    check_view_expiry_outlives_lease,
    statement_timeout,
)


@contextmanager
def database_options(**options):
    """Swap the default connection's OPTIONS (and ENGINE, for the parser) for the block."""
    saved = dict(connection.settings_dict)
    connection.settings_dict.update(options)
    try:
        yield
    finally:
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


def ids(messages):
    return [message.id for message in messages]


def test_no_messages_for_the_test_settings():
    assert check_settings() == []
    assert check_lease_outlives_requests() == []  # no request timeout is known


def test_e001_unknown_keys_are_named_with_the_valid_ones():
    with override_settings(IDEMPOTENCY={"LEASES": 5, "HEADERS": "X"}):
        (message,) = check_settings()
    assert message.id == "idempotency.E001"
    assert isinstance(message, Error)
    assert "HEADERS, LEASES" in message.msg
    assert "LEASE" in message.hint and "REQUEST_TIMEOUT" in message.hint


@pytest.mark.parametrize(
    ("key", "value"),
    [("LEASE", "soon"), ("SCOPE_FUNCTION", "no.such.function"), ("REQUEST_TIMEOUT", "1 min")],
)
def test_e002_invalid_values_name_the_key(key, value):
    with override_settings(IDEMPOTENCY={key: value}):
        messages = check_settings()
    assert ids(messages) == ["idempotency.E002"]
    assert repr(key) in messages[0].msg
    assert f"settings.IDEMPOTENCY[{key!r}]" in messages[0].hint


@pytest.mark.parametrize("length", [0, 256])
def test_e003_key_length_outside_the_column(length):
    with override_settings(IDEMPOTENCY={"MAX_KEY_LENGTH": length}):
        (message,) = check_settings()
    assert message.id == "idempotency.E003"
    assert "IDEMPOTENCY['MAX_KEY_LENGTH'] = 255" in message.hint


@pytest.mark.parametrize("expiry", [30, 60])
def test_e004_expiry_not_longer_than_the_lease(expiry):
    with override_settings(IDEMPOTENCY={"LEASE": 60, "EXPIRY": expiry}):
        (message,) = check_settings()
    assert message.id == "idempotency.E004"
    assert f"({expiry} s)" in message.msg
    assert "IDEMPOTENCY['EXPIRY'] = timedelta(hours=24)" in message.hint


def test_e004_not_raised_when_expiry_outlasts_the_lease():
    with override_settings(IDEMPOTENCY={"LEASE": 60, "EXPIRY": 61}):
        assert check_settings() == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("LEASE", math.inf),
        ("LEASE", math.nan),
        ("LEASE", True),
        ("EXPIRY", 10**30),
        ("REQUIRED", "false"),
        ("HEADER", None),
        ("HEADER", "Idempotency Key"),
        ("MAX_KEY_LENGTH", "255"),
        ("REPLAYED_HEADERS", ["Location", 5]),
        ("PROBLEM_TYPE_BASE", 5),
        ("FINGERPRINT_FUNCTION", "idempotency.conf.SETTING_NAME"),  # imports, not callable
    ],
)
def test_e002_every_kind_of_value_is_checked(key, value):
    with override_settings(IDEMPOTENCY={key: value}):
        messages = check_settings()
    assert ids(messages) == ["idempotency.E002"]
    assert f"settings.IDEMPOTENCY[{key!r}]" in messages[0].msg


@pytest.mark.parametrize("value", [None, ["LEASE", 5], "LEASE=5", 0])
def test_e005_settings_that_are_not_a_dict(value):
    with override_settings(IDEMPOTENCY=value):
        (message,) = check_settings()
        assert check_lease_outlives_requests() == []
        assert check_view_expiry_outlives_lease() == []
    assert message.id == "idempotency.E005"
    assert f"is {type(value).__name__}, not a dict" in message.msg


@pytest.mark.parametrize(("key", "value"), [("METHODS", "POST"), ("REPLAYED_HEADERS", "Location")])
def test_e006_a_lone_string_where_a_list_belongs(key, value):
    with override_settings(IDEMPOTENCY={key: value}):
        (message,) = check_settings()
    assert message.id == "idempotency.E006"
    assert f"not the string {value!r}" in message.msg
    assert f"IDEMPOTENCY[{key!r}] = [{value!r}]" in message.hint


@pytest.mark.parametrize(
    ("key", "value", "default"),
    [
        ("LEASE", 0, "timedelta(seconds=60)"),
        ("LEASE", timedelta(seconds=-1), "timedelta(seconds=60)"),
        ("EXPIRY", 0.0, "timedelta(hours=24)"),
        ("REQUEST_TIMEOUT", -30, "None"),
    ],
)
def test_e007_durations_of_zero_or_less(key, value, default):
    with override_settings(IDEMPOTENCY={key: value}):
        (message,) = check_settings()  # and no E004: the pair is not compared
    assert message.id == "idempotency.E007"
    assert f"Set IDEMPOTENCY[{key!r}] = {default} (the default)" in message.hint


def test_e008_an_unknown_method():
    with override_settings(IDEMPOTENCY={"METHODS": ["POST", "PSOT"]}):
        (message,) = check_settings()
    assert message.id == "idempotency.E008"
    assert "'PSOT'" in message.msg


@override_settings(ROOT_URLCONF="tests.option_urls")
def test_e009_a_view_whose_own_value_ends_its_expiry_before_its_lease():
    messages = check_view_expiry_outlives_lease()
    assert ids(messages) == ["idempotency.E009", "idempotency.E009"]
    lease, expiry = messages
    assert "TwoDayLeaseView (two-day-lease/) is 86400 s, not longer than its lease of 172800 s" in (
        lease.msg
    )
    assert "Set TwoDayLeaseView.idempotency_expiry = timedelta(hours=24)" in lease.hint
    assert "short_expiry (short-expiry/) is 30 s, not longer than its lease of 60 s" in expiry.msg
    assert "Set @idempotent(expiry=...) on short_expiry = " in expiry.hint
    with override_settings(IDEMPOTENCY={"LEASE": 10, "EXPIRY": timedelta(days=3)}):
        assert check_view_expiry_outlives_lease() == []


@override_settings(ROOT_URLCONF="tests.option_urls")
def test_w003_compares_leases_given_in_seconds():
    # A view lease of 20 (seconds) beside a REQUEST_TIMEOUT number crashed the check.
    with override_settings(IDEMPOTENCY={"REQUEST_TIMEOUT": 45}):
        messages = check_lease_outlives_requests()
    (view,) = [m for m in messages if "SecondsLeaseView" in m.msg]
    assert "(20 s) is shorter than settings.IDEMPOTENCY['REQUEST_TIMEOUT'] (45 s)" in view.msg


def test_w001_database_without_row_locks_in_production(settings):
    settings.DEBUG = False
    if connection.vendor == "sqlite":
        with database_options(OPTIONS={}):
            (message,) = check_row_locks()
        assert message.id == "idempotency.W001"
        assert """DATABASES['default']["OPTIONS"]["transaction_mode"]""" in message.hint
        assert check_row_locks() == []  # IMMEDIATE, as the test settings have it
    else:
        assert check_row_locks() == []


def test_w001_silent_in_debug(settings):
    settings.DEBUG = True
    with database_options(OPTIONS={}):
        assert check_row_locks() == []


def test_w002_set_cookie_in_replayed_headers():
    with override_settings(IDEMPOTENCY={"REPLAYED_HEADERS": ["Content-Type", "Set-Cookie"]}):
        (message,) = check_settings()
    assert message.id == "idempotency.W002"
    assert isinstance(message, Warning)
    assert "Remove Set-Cookie from IDEMPOTENCY['REPLAYED_HEADERS']" in message.hint


def test_w003_lease_shorter_than_the_declared_request_timeout():
    with override_settings(IDEMPOTENCY={"REQUEST_TIMEOUT": 90}):
        messages = check_lease_outlives_requests()
    lease_setting = [m for m in messages if "settings.IDEMPOTENCY['LEASE']" in m.msg]
    assert ids(lease_setting) == ["idempotency.W003"]
    assert "(60 s) is shorter than settings.IDEMPOTENCY['REQUEST_TIMEOUT'] (90 s)" in (
        lease_setting[0].msg
    )
    assert "IDEMPOTENCY['LEASE'] = timedelta(seconds=90)" in lease_setting[0].hint


@override_settings(ROOT_URLCONF="tests.check_urls")
def test_w003_silent_when_every_lease_outlasts_the_timeout():
    # The shortest lease there is ShortLeaseView's 5 s.
    with override_settings(IDEMPOTENCY={"REQUEST_TIMEOUT": 4.5}):
        assert check_lease_outlives_requests() == []


@override_settings(ROOT_URLCONF="tests.plain_urls")
def test_w003_names_views_with_their_own_shorter_lease():
    # plain_views.optional_widget sets lease=5 s; the global lease is 60 s.
    with override_settings(IDEMPOTENCY={"REQUEST_TIMEOUT": 30}):
        (message,) = check_lease_outlives_requests()
    assert message.id == "idempotency.W003"
    assert "optional_widget" in message.msg and "plain/optional/" in message.msg
    assert "@idempotent(lease=...) on optional_widget = timedelta(seconds=30)" in message.hint


@override_settings(ROOT_URLCONF="tests.check_urls")
def test_w003_names_mixin_views_and_viewset_actions():
    with override_settings(IDEMPOTENCY={"REQUEST_TIMEOUT": 30}):
        messages = check_lease_outlives_requests()
    assert ids(messages) == ["idempotency.W003", "idempotency.W003"]
    text = " ".join(message.msg for message in messages)
    assert "ShortLeaseView" in text and "ShortLeaseViewSet" in text
    assert "ShortLeaseView.idempotency_lease = timedelta(seconds=30)" in messages[0].hint


@pytest.mark.parametrize(
    ("options", "seconds"),
    [
        ("-c statement_timeout=5000", 5),
        ("-c statement_timeout=90s", 90),
        ("-cstatement_timeout=2min", 120),
        ("--statement-timeout=1500ms", 1.5),
        ("-c lock_timeout=1s -c statement_timeout='1h'", 3600),
        ("-c statement_timeout=0", None),
        ("-c lock_timeout=1s", None),
        ("", None),
    ],
)
def test_statement_timeout_is_read_from_postgresql_options(options, seconds):
    settings_dict = {
        "ENGINE": "django.db.backends.postgresql",
        "OPTIONS": {"options": options},
    }
    expected = None if seconds is None else timedelta(seconds=seconds)
    assert statement_timeout(settings_dict) == expected


def test_statement_timeout_is_ignored_on_other_databases():
    settings_dict = {"ENGINE": "django.db.backends.sqlite3", "OPTIONS": {"options": "-c x"}}
    assert statement_timeout(settings_dict) is None


def test_w003_lease_shorter_than_the_databases_statement_timeout():
    with database_options(
        ENGINE="django.db.backends.postgresql",
        OPTIONS={
            **connection.settings_dict.get("OPTIONS", {}),
            "options": "-c statement_timeout=2min",
        },
    ):
        messages = check_lease_outlives_requests()
    messages = [m for m in messages if "settings.IDEMPOTENCY['LEASE']" in m.msg]
    assert ids(messages) == ["idempotency.W003"]
    assert "the statement_timeout of database 'default' (120 s)" in messages[0].msg


def test_every_hint_says_what_to_type():
    # Each hint names the setting or option to change, with its value or the action to take.
    for check_id, (_, hint) in MESSAGES.items():
        assert "IDEMPOTENCY" in hint or "DATABASES[" in hint or "{fix}" in hint, check_id


# ---------------------------------------------------------------------------------------------
# Each ID once through ``manage.py check``: registered, and reported as Django reports checks.

MISCONFIGURATIONS = {
    "idempotency.E001": {"IDEMPOTENCY": {"LEASES": 5}},
    "idempotency.E002": {"IDEMPOTENCY": {"LEASE": "soon"}},
    "idempotency.E003": {"IDEMPOTENCY": {"MAX_KEY_LENGTH": 300}},
    "idempotency.E004": {"IDEMPOTENCY": {"EXPIRY": 10}},
    "idempotency.E005": {"IDEMPOTENCY": None},
    "idempotency.E006": {"IDEMPOTENCY": {"METHODS": "POST"}},
    "idempotency.E007": {"IDEMPOTENCY": {"LEASE": 0}},
    "idempotency.E008": {"IDEMPOTENCY": {"METHODS": ["POTS"]}},
    "idempotency.E009": {"ROOT_URLCONF": "tests.option_urls"},
    "idempotency.W002": {"IDEMPOTENCY": {"REPLAYED_HEADERS": ["Set-Cookie"]}},
    "idempotency.W003": {"IDEMPOTENCY": {"REQUEST_TIMEOUT": 600}},
}


def run_check(**kwargs):
    out, err = StringIO(), StringIO()
    try:
        call_command("check", stdout=out, stderr=err, **kwargs)
    except SystemCheckError as error:
        return str(error)
    return out.getvalue() + err.getvalue()


@pytest.mark.parametrize("check_id", sorted(MISCONFIGURATIONS))
def test_each_id_through_manage_py_check(check_id):
    with override_settings(**MISCONFIGURATIONS[check_id]):
        output = run_check()
    assert check_id in output
    assert "HINT:" in output


@pytest.mark.django_db
def test_w001_through_manage_py_check(settings):
    settings.DEBUG = False
    if connection.vendor != "sqlite":
        pytest.skip("W001 fires only on a database without row locks")
    with database_options(OPTIONS={}):
        output = run_check(databases=["default"])
    assert "idempotency.W001" in output


def test_every_id_in_the_table_is_exercised_here():
    # E010 and W004 (a MySQL/MariaDB table's collation): tests/test_collation.py.
    assert set(MESSAGES) == {
        *MISCONFIGURATIONS,
        "idempotency.W001",
        "idempotency.E010",
        "idempotency.W004",
    }


def test_checks_are_registered_by_the_app():
    from django.core.checks.registry import registry

    registered = registry.get_checks(include_deployment_checks=True)
    assert {
        check_settings,
        check_lease_outlives_requests,
        check_view_expiry_outlives_lease,
        check_row_locks,
    } <= set(registered)
    assert checks.check_settings in registered
