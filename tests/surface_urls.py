"""URLs of the Django-surface matrix (``@pytest.mark.urls("tests.surface_urls")``)."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from tests.testapp import surface_views as views

router = SimpleRouter(trailing_slash=False)
router.register("owned", views.OwnedWidgetViewSet, basename="owned")
router.register("create-only", views.CreateOnlyViewSet, basename="create-only")

urlpatterns = [
    path("mixin", views.SurfaceView.as_view()),
    path("function", views.surface_function),
    path("optional-mixin", views.OptionalKeyAtomicView.as_view()),
    path("optional-function", views.optional_key_function),
    path("narrow-headers", views.NarrowHeadersView.as_view()),
    path("detail/<int:pk>", views.WidgetDetailView.as_view()),
    path("slow", views.SlowView.as_view()),
    *router.urls,
]
