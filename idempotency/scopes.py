"""Whose keys these are: two scopes never see each other's records."""

from __future__ import annotations

import re
from collections.abc import Callable

from django.core.exceptions import ImproperlyConfigured
from rest_framework.request import Request

ANONYMOUS_SCOPE = "anonymous"

# The database column's length, in characters.
MAX_SCOPE_LENGTH = 255
# Unicode's Cc (control) and Cs (surrogate) categories, whole: one scan instead of a category
# lookup per character (tests check it against unicodedata for every code point).
_UNSTORABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class InvalidScope(ImproperlyConfigured, ValueError):
    """A scope no database could store alike: empty, too long, or with control characters.

    A developer error wherever the scope comes from (a scope function, ``run_once(scope=...)``):
    ``ImproperlyConfigured`` for views, and a ``ValueError`` for callers of ``run_once``."""


def checked_scope(scope: object, source: object | Callable[[], object]) -> str:
    """``scope`` if every backend stores it as it is; ``source`` says where it came from: text
    (a lazy translation too), or a callable that returns it, called only when it is refused.

    Checked here rather than left to the database: PostgreSQL raises ``DataError`` for a scope
    over 255 characters (or NUL), while SQLite stores it silently.
    """
    # Printable ASCII (most scopes: "app.user:42") holds no control character or surrogate.
    if (
        type(scope) is str
        and 0 < len(scope) <= MAX_SCOPE_LENGTH
        and scope.isascii()
        and scope.isprintable()
    ):
        return scope
    if callable(source) and not isinstance(source, str):
        source = source()
    if not isinstance(scope, str):
        raise TypeError(f"{source} must be a str, not {type(scope).__name__} {scope!r}.")
    if not scope:
        raise InvalidScope(f"{source} is empty; a scope names whose keys these are.")
    if len(scope) > MAX_SCOPE_LENGTH:
        raise InvalidScope(
            f"{source} is {len(scope)} characters long; at most {MAX_SCOPE_LENGTH} fit in the "
            f"database. Shorten it, e.g. by hashing its long part: {scope[:40]!r}..."
        )
    if _UNSTORABLE.search(scope) is not None:
        raise InvalidScope(
            f"{source} holds control characters or lone surrogates, which not every database "
            f"stores: {scope!r}."
        )
    return scope


def user_scope(request: Request) -> str:
    """Scope keys by the authenticated user; every anonymous caller shares one scope.

    Anonymous callers sharing a scope can replay each other's responses if they guess a key:
    protect anonymous endpoints with a scope function of your own (a session, an API client).
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return ANONYMOUS_SCOPE
    return f"{user._meta.label_lower}:{user.pk}"
