"""A URLconf of protected views whose own lease or expiry only the checks can judge.

Each sets one of the pair, so nothing is refused where it is set: only the check, which compares
with the settings, finds that two of them expire their keys before the lease ends (E009).
"""

from __future__ import annotations

from datetime import timedelta

from django.http import HttpResponse
from django.urls import path

from idempotency.decorators import idempotent
from tests.testapp.views import WidgetView


class TwoDayLeaseView(WidgetView):
    idempotency_lease = timedelta(days=2)  # the default expiry is 24 hours


class SecondsLeaseView(WidgetView):
    idempotency_lease = 20  # seconds, compared with REQUEST_TIMEOUT (W003)


@idempotent(expiry=30)  # the default lease is 60 s
def short_expiry(request):
    return HttpResponse(status=201)


urlpatterns = [
    path("two-day-lease/", TwoDayLeaseView.as_view()),
    path("short-expiry/", short_expiry),
    path("seconds-lease/", SecondsLeaseView.as_view()),
]
