"""The demo's answer to an unexpected error: a problem, never Django's HTML page or a traceback.

Django calls :func:`server_error` (``handler500`` in ``config.urls``) once the exception has
left the view, so the idempotency mixin has already rolled the operation back and released its
key, and Django has logged the exception with its traceback (logger ``django.request``, which
``config.settings.LOGGING`` sends to the console whatever ``DEBUG`` is). With ``DEBUG`` on,
Django shows its debug page instead and this view is not called.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _
from django.views import defaults
from rest_framework import status

from idempotency.exceptions import ProblemDetailsError, problem_response


class ServerError(ProblemDetailsError):
    status_code = status.HTTP_500_INTERNAL_SERVER_ERROR
    problem_type = "server-error"
    title = _("Internal server error")
    default_detail = _(
        "The server failed before it could answer; nothing it started was kept. "
        "Retry with the same idempotency key."
    )
    default_code = "server_error"


def server_error(request: HttpRequest) -> HttpResponse:
    """A problem for API clients; Django's page for a browser (the admin, the front page)."""
    if _asks_for_html(request):
        return defaults.server_error(request)
    return problem_response(ServerError())


def _asks_for_html(request: HttpRequest) -> bool:
    # Browsers name text/html; API clients send */* (curl), application/json or nothing.
    return "text/html" in request.headers.get("Accept", "")
