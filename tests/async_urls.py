"""URLs of the async views (``@pytest.mark.urls("tests.async_urls")``, and tests/asgi.py)."""

from __future__ import annotations

from django.urls import path

from tests.testapp import async_views

urlpatterns = [
    path("async/widgets", async_views.create_widget),
    path("async/optional", async_views.optional_widget),
]
