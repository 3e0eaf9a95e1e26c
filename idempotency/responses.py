"""Stored outcomes: what of a response is kept, and how a replay is rebuilt from it."""

from __future__ import annotations

from collections.abc import Collection

from django.http import HttpResponse

from idempotency.conf import NEVER_REPLAYED_HEADERS, idempotency_settings
from idempotency.store import StoredResponse

REPLAYED_HEADER = "Idempotent-Replayed"


def replayed_header_names(names: Collection[str] | None = None) -> frozenset[str]:
    """Lower-cased names of the headers to store: ``names`` or the setting, never Set-Cookie."""
    if names is None:
        names = idempotency_settings.REPLAYED_HEADERS
    return frozenset(name.lower() for name in names) - NEVER_REPLAYED_HEADERS


def snapshot(response: HttpResponse, replayed: frozenset[str]) -> StoredResponse:
    """The status, the allow-listed headers and the rendered body of ``response``."""
    headers = [(name, value) for name, value in response.items() if name.lower() in replayed]
    return StoredResponse(response.status_code, headers, bytes(response.content))


def replay_response(stored: StoredResponse) -> HttpResponse:
    """Rebuild the stored outcome, marked with ``Idempotent-Replayed: true``."""
    response = HttpResponse(stored.body, status=stored.status)
    del response["Content-Type"]
    for name, value in stored.headers:
        response[name] = value
    response[REPLAYED_HEADER] = "true"
    return response
