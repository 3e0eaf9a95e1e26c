"""The demo's routes as they are without drf-spectacular: no schema, no Swagger UI."""

from __future__ import annotations

from config.urls import urlpatterns as demo_urlpatterns

urlpatterns = [
    pattern
    for pattern in demo_urlpatterns
    if getattr(pattern, "name", None) not in {"schema", "api-docs"}
]
