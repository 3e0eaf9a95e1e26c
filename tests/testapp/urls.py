from __future__ import annotations

from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from tests.testapp import (
    converters,  # noqa: F401  (registers isodate and account)
    fingerprint_views,
    views,
)

router = SimpleRouter()
router.register("viewset-widgets", views.WidgetViewSet, basename="viewset-widget")

urlpatterns = [
    re_path(r"^widgets/?$", views.WidgetView.as_view(), name="widgets"),
    path("widgets/<int:group>/", views.WidgetView.as_view(), name="widgets-in-group"),
    path("other-widgets/", views.WidgetView.as_view(), name="other-widgets"),
    path("optional-widgets/", views.OptionalKeyWidgetView.as_view(), name="optional-widgets"),
    path("put-widgets/", views.PutProtectedView.as_view(), name="put-widgets"),
    path("private-widgets/", views.AuthenticatedWidgetView.as_view(), name="private-widgets"),
    path("throttled-widgets/", views.ThrottledWidgetView.as_view(), name="throttled-widgets"),
    path("atomic-check/", views.AtomicCheckView.as_view(), name="atomic-check"),
    path("short-lease-widgets/", views.ShortLeaseWidgetView.as_view(), name="short-lease"),
    path("crash-if-first/", views.CrashIfFirstWidgetView.as_view(), name="crash-if-first"),
    path("uuid-widgets/<uuid:ref>/", views.WidgetView.as_view(), name="uuid-widgets"),
    path("dated-widgets/<isodate:day>/", views.WidgetView.as_view(), name="dated-widgets"),
    path("account-widgets/<account:account>/", views.WidgetView.as_view(), name="account-widgets"),
    path("amounts/", fingerprint_views.AmountView.as_view(), name="amounts"),
    *router.urls,
]
