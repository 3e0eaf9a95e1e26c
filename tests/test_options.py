"""One conversion per kind of value: the same refusals and the same meaning for a setting, a
view attribute, an ``@action`` initkwarg, an ``@idempotent`` option and a ``run_once`` argument."""

from __future__ import annotations

import math
from datetime import timedelta
from fractions import Fraction

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import RequestFactory, override_settings
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory

from idempotency import options
from idempotency.decorators import idempotent
from idempotency.models import IdempotencyRecord
from idempotency.operations import idempotent_operation, run_once
from idempotency.options import (
    ExpiryNotAfterLeaseError,
    InvalidOption,
    LoneStringError,
    NotPositiveError,
    UnknownMethodError,
)
from tests.testapp.views import WidgetView, WidgetViewSet

SCOPE = "webhooks:options"


# The conversions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(30, 30), (0.25, 0.25), (Fraction(1, 2), 0.5), (timedelta(minutes=2), 120)],
)
def test_a_duration_is_a_timedelta_or_a_real_number_of_seconds(value, seconds):
    assert options.duration(value, "x") == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (True, InvalidOption),
        ("30", InvalidOption),
        (None, InvalidOption),
        (math.nan, InvalidOption),
        (math.inf, InvalidOption),
        (10**30, InvalidOption),
        (timedelta.max, InvalidOption),
        (0, NotPositiveError),
        (-5, NotPositiveError),
        (timedelta(0), NotPositiveError),
        (timedelta(seconds=-1), NotPositiveError),
        (1e-9, NotPositiveError),  # rounds to no time at all
    ],
)
def test_a_duration_refuses_bool_text_nan_infinity_and_zero_or_less(value, error):
    with pytest.raises(error, match="LEASE"):
        options.duration(value, "LEASE")


def test_wrong_types_are_type_errors_and_wrong_values_value_errors():
    # For callers of run_once, who catch the builtins rather than ImproperlyConfigured.
    with pytest.raises(TypeError):
        options.duration("soon", "x")
    with pytest.raises(ValueError):
        options.duration(-1, "x")


@pytest.mark.parametrize(
    "convert", [options.methods, options.header_names], ids=["methods", "headers"]
)
def test_a_lone_string_is_refused_where_a_list_belongs(convert):
    with pytest.raises(LoneStringError, match="not the string 'POST'"):
        convert("POST", "x")


@pytest.mark.parametrize("value", [{"POST": True}, 5, None, ["POST", 5], (item for item in "A")])
def test_a_list_of_names_must_be_a_collection_of_strings(value):
    with pytest.raises(InvalidOption):
        options.methods(value, "x")


def test_methods_are_upper_cased_and_unknown_ones_refused():
    assert options.methods(["post", "Patch"], "x") == {"POST", "PATCH"}
    assert options.methods([], "x") == frozenset()  # protect nothing: a deliberate choice
    with pytest.raises(UnknownMethodError, match="'POTS'"):
        options.methods(["POTS"], "x")


@pytest.mark.parametrize("name", ["", "Bad Header", "Location\n", "Ünïcode"])
def test_header_names_must_be_http_tokens(name):
    with pytest.raises(InvalidOption):
        options.header_names([name], "x")


@pytest.mark.parametrize("value", [1, 0, "false", None])
def test_a_flag_is_true_or_false_only(value):
    with pytest.raises(InvalidOption):
        options.flag(value, "x")


# Settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("METHODS", "POST"),
        ("REPLAYED_HEADERS", "Location"),
        ("LEASE", 0),
        ("EXPIRY", -1),
        ("REQUEST_TIMEOUT", math.inf),
        ("REQUIRED", "false"),
        ("HEADER", None),
        ("MAX_KEY_LENGTH", "255"),
        ("PROBLEM_TYPE_BASE", 5),
    ],
)
def test_settings_refuse_what_the_checks_report(key, value):
    from idempotency.conf import idempotency_settings

    with override_settings(IDEMPOTENCY={key: value}), pytest.raises(InvalidOption, match=key):
        getattr(idempotency_settings, key)


# Views: refused when the class is defined ---------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "value", "error"),
    [
        ("idempotency_methods", "POST", LoneStringError),
        ("idempotency_methods", ["POTS"], UnknownMethodError),
        ("idempotency_replayed_headers", "Location", LoneStringError),
        ("idempotency_required", "no", InvalidOption),
        ("idempotency_lease", 0, NotPositiveError),
        ("idempotency_lease", timedelta(seconds=-1), NotPositiveError),
        ("idempotency_expiry", math.nan, InvalidOption),
        ("idempotency_lease", True, InvalidOption),
    ],
)
def test_a_view_attribute_is_refused_at_class_definition(attribute, value, error):
    with pytest.raises(error, match=rf"BadView\.{attribute}"):
        type("BadView", (WidgetView,), {attribute: value})


def test_a_view_whose_expiry_ends_before_its_lease_is_refused_naming_the_fix():
    with pytest.raises(ExpiryNotAfterLeaseError) as caught:

        class ShortExpiryView(WidgetView):
            idempotency_lease = timedelta(minutes=5)
            idempotency_expiry = timedelta(minutes=1)

    message = str(caught.value)
    assert "ShortExpiryView" in message
    assert "the expiry (60 s) is not longer than the lease (300 s)" in message
    assert "ShortExpiryView.idempotency_expiry longer than the lease" in message


def test_a_subclass_inherits_the_check_of_its_pair():
    class LongLeaseView(WidgetView):
        idempotency_lease = timedelta(hours=1)

    with pytest.raises(ExpiryNotAfterLeaseError, match="ShorterExpiryView"):
        type("ShorterExpiryView", (LongLeaseView,), {"idempotency_expiry": 3599})


@pytest.mark.parametrize(
    ("initkwargs", "error"),
    [
        ({"idempotency_lease": 0}, NotPositiveError),
        ({"idempotency_methods": "POST"}, LoneStringError),
        ({"idempotency_lease": 120, "idempotency_expiry": 60}, ExpiryNotAfterLeaseError),
    ],
)
def test_as_view_initkwargs_are_refused_as_the_class_attributes_are(initkwargs, error):
    with pytest.raises(error, match="WidgetViewSet"):
        WidgetViewSet.as_view({"post": "create"}, **initkwargs)


def test_action_initkwargs_are_refused_when_the_router_builds_the_view():
    from rest_framework.routers import SimpleRouter

    class ZeroLeaseActionViewSet(WidgetViewSet):
        @action(detail=False, methods=["post"], idempotency_lease=0)
        def instant(self, request):
            return Response(status=201)

    router = SimpleRouter()
    router.register("zero", ZeroLeaseActionViewSet, basename="zero")
    with pytest.raises(NotPositiveError, match="idempotency_lease=... given to"):
        router.urls  # noqa: B018


# Views: durations in seconds work at request time -------------------------------------------


class LeaseReportingView(WidgetView):
    """Durations as numbers of seconds; the operation reports the lease its record holds."""

    idempotency_lease = 30
    idempotency_expiry = 3600.5

    def post(self, request, *args, **kwargs):
        record = IdempotencyRecord.objects.get(key=self.idempotency_key)
        lease = (record.locked_until - record.created_at).total_seconds()
        expiry = (record.expires_at - record.created_at).total_seconds()
        return Response({"lease": lease, "expiry": expiry}, status=201)


@pytest.mark.django_db(transaction=True)
def test_a_view_lease_in_seconds_is_used_as_seconds():
    request = APIRequestFactory().post("/", {}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    response = LeaseReportingView.as_view()(request)
    assert response.status_code == 201, response.content
    assert response.data == {"lease": 30, "expiry": 3600.5}


@pytest.mark.django_db(transaction=True)
def test_an_action_lease_in_seconds_is_used_as_seconds():
    view = LeaseReportingView.as_view(idempotency_lease=45, idempotency_expiry=90)
    request = APIRequestFactory().post("/", {}, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert view(request).data == {"lease": 45, "expiry": 90}


@pytest.mark.django_db(transaction=True)
def test_lower_case_view_methods_protect_the_method():
    class LowerCaseView(WidgetView):
        idempotency_methods = ["post"]

    request = APIRequestFactory().post("/", {"name": "a"}, format="json")
    response = LowerCaseView.as_view()(request)
    assert response.status_code == 400  # protected: the key is required
    assert IdempotencyRecord.objects.count() == 0


# @idempotent: refused when the view is decorated --------------------------------------------


def plain(request):
    return HttpResponse(status=201)


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("methods", "POST", LoneStringError),
        ("methods", ["PSOT"], UnknownMethodError),
        ("replayed_headers", "Location", LoneStringError),
        ("required", 1, InvalidOption),
        ("lease", 0, NotPositiveError),
        ("expiry", -3, NotPositiveError),
        ("lease", math.inf, InvalidOption),
        ("scope", "no.such.function", InvalidOption),
        ("fingerprint", 42, InvalidOption),
    ],
)
def test_a_decorator_option_is_refused_at_decoration(option, value, error):
    with pytest.raises(error, match=rf"@idempotent\({option}=\.\.\.\) on plain"):
        idempotent(**{option: value})(plain)


def test_a_decorated_view_whose_expiry_ends_before_its_lease_is_refused():
    with pytest.raises(ExpiryNotAfterLeaseError) as caught:
        idempotent(lease=timedelta(minutes=2), expiry=60)(plain)
    assert "view plain: the expiry (60 s) is not longer than the lease (120 s)" in str(caught.value)
    assert "Set @idempotent(expiry=...) on plain longer" in str(caught.value)


@pytest.mark.django_db(transaction=True)
def test_a_decorator_lease_in_seconds_is_used_as_seconds():
    seen = {}

    @idempotent(lease=30, expiry=600)
    def reporting(request):
        record = IdempotencyRecord.objects.get(key="k-3")
        seen["lease"] = (record.locked_until - record.created_at).total_seconds()
        seen["expiry"] = (record.expires_at - record.created_at).total_seconds()
        return HttpResponse(status=201)

    response = reporting(RequestFactory().post("/", HTTP_IDEMPOTENCY_KEY="k-3"))
    assert response.status_code == 201
    assert seen == {"lease": 30, "expiry": 600}


@pytest.mark.django_db(transaction=True)
def test_lower_case_decorator_methods_protect_the_method():
    view = idempotent(methods=["post"])(plain)
    assert view(RequestFactory().post("/")).status_code == 400  # the key is required


# run_once: refused at the call ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"lease": 0}, NotPositiveError),
        ({"lease": -1}, NotPositiveError),
        ({"expiry": timedelta(0)}, NotPositiveError),
        ({"lease": "30"}, TypeError),
        ({"lease": True}, TypeError),
        ({"expiry": math.nan}, ValueError),
        ({"lease": 120, "expiry": 60}, ExpiryNotAfterLeaseError),
        ({"lease": timedelta(days=2)}, ExpiryNotAfterLeaseError),  # the default expiry is 24 h
        ({"expiry": 30}, ExpiryNotAfterLeaseError),  # the default lease is 60 s
    ],
)
@pytest.mark.django_db(transaction=True)
def test_run_once_refuses_bad_durations_before_anything_runs(arguments, error):
    calls = []
    with pytest.raises(error, match="run_once"):
        run_once(lambda: calls.append(1), scope=SCOPE, key="evt-bad", **arguments)
    assert calls == []
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_run_once_takes_durations_in_seconds():
    def handler():
        record = IdempotencyRecord.objects.get(key="evt-seconds")
        return [
            (record.locked_until - record.created_at).total_seconds(),
            (record.expires_at - record.created_at).total_seconds(),
        ]

    assert run_once(handler, scope=SCOPE, key="evt-seconds", lease=30, expiry=7200) == [30, 7200]


@pytest.mark.django_db(transaction=True)
def test_idempotent_operation_refuses_an_expiry_before_its_lease():
    with (
        pytest.raises(ExpiryNotAfterLeaseError),
        idempotent_operation(scope=SCOPE, key="evt-op", lease=10, expiry=5),
    ):
        pass  # pragma: no cover - never entered


def test_option_errors_are_improperly_configured():
    # A view's or a setting's bad value reads as Django's configuration error.
    assert issubclass(InvalidOption, ImproperlyConfigured)


# run_once: keys -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_run_once_takes_an_int_key_as_its_decimal_text():
    calls = []
    assert run_once(lambda: calls.append(1) or "done", scope=SCOPE, key=12345) == "done"
    assert run_once(lambda: calls.append(1) or "again", scope=SCOPE, key="12345") == "done"
    assert calls == [1]
    assert IdempotencyRecord.objects.get().key == "12345"


@pytest.mark.parametrize("key", [True, None, 1.5, {"id": 1}])
@pytest.mark.django_db(transaction=True)
def test_run_once_refuses_any_other_key_type_with_type_error(key):
    with pytest.raises(TypeError, match="must be a str or an int"):
        run_once(lambda: None, scope=SCOPE, key=key)
    assert IdempotencyRecord.objects.count() == 0


def test_a_view_attribute_computed_by_a_property_is_checked_by_its_hook():
    class PerRequestView(WidgetView):
        @property
        def idempotency_methods(self):
            return self.chosen

    view = PerRequestView()
    view.chosen = ["put"]
    assert view.get_idempotency_methods() == {"PUT"}
    view.chosen = "PUT"
    with pytest.raises(LoneStringError, match=r"PerRequestView\.idempotency_methods"):
        view.get_idempotency_methods()


@pytest.mark.django_db(transaction=True)
def test_idempotent_operation_refuses_an_operation_name_that_is_not_text():
    with (
        pytest.raises(TypeError, match="operation="),
        idempotent_operation(scope=SCOPE, key="evt-op", operation=5),
    ):
        pass  # pragma: no cover - never entered
