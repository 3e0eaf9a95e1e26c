"""URLs of the plain (non-DRF) views, for tests marked ``@pytest.mark.urls("tests.plain_urls")``."""

from __future__ import annotations

from django.urls import path

from tests.testapp import plain_views

urlpatterns = [
    path("plain/widgets/", plain_views.create_widget, name="plain-widgets"),
    path("plain/widgets/<int:group>/", plain_views.create_widget, name="plain-widgets-in-group"),
    path("plain/optional/", plain_views.optional_widget, name="plain-optional"),
    path("plain/tenant/", plain_views.tenant_widget, name="plain-tenant"),
]
