"""URLs of the plain (non-DRF) views, for tests marked ``@pytest.mark.urls("tests.plain_urls")``."""

from __future__ import annotations

from django.urls import path

from tests.testapp import (
    converters,  # noqa: F401  (registers isodate and account)
    fingerprint_views,
    plain_views,
)

urlpatterns = [
    path("plain/widgets/", plain_views.create_widget, name="plain-widgets"),
    path("plain/widgets/<int:group>/", plain_views.create_widget, name="plain-widgets-in-group"),
    path("plain/optional/", plain_views.optional_widget, name="plain-optional"),
    path("plain/tenant/", plain_views.tenant_widget, name="plain-tenant"),
    path("plain/uuid/<uuid:ref>/", fingerprint_views.widget_at, name="plain-uuid"),
    path("plain/dated/<isodate:day>/", fingerprint_views.widget_at, name="plain-dated"),
    path("plain/account/<account:account>/", fingerprint_views.widget_at, name="plain-account"),
]
