from __future__ import annotations

from django.urls import include, path

from config.urls import urlpatterns as demo_urlpatterns

urlpatterns = [
    path("test/", include("tests.testapp.urls")),
    path("", include("tests.async_urls")),
    *demo_urlpatterns,
]
