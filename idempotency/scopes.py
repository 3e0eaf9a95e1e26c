"""Whose keys these are: two scopes never see each other's records."""

from __future__ import annotations

from rest_framework.request import Request

ANONYMOUS_SCOPE = "anonymous"


def user_scope(request: Request) -> str:
    """Scope keys by the authenticated user; every anonymous caller shares one scope.

    Anonymous callers sharing a scope can replay each other's responses if they guess a key:
    protect anonymous endpoints with a scope function of your own (a session, an API client).
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return ANONYMOUS_SCOPE
    return f"{user._meta.label_lower}:{user.pk}"
