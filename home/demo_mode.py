"""Demo mode: what only a local demo may do, and the one place that decides whether it is on.

In demo mode the front page signs a visitor in as the demo user (no password, no token sent to
the browser) and the payments API is also served without idempotency, so the page can show what
a retry does without a key. Both would be holes in a real service, hence two locks: ``DEMO_MODE``
must be set *and* ``DEBUG`` on. A deployment already keeps ``DEBUG`` off (Django's debug pages
are unfit for one), so a stray ``DEMO_MODE=true`` there turns nothing on. ``bin/demo`` sets both.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.http import Http404
from rest_framework.request import Request
from rest_framework.views import APIView

DEMO_USERNAME = "demo"

Params = ParamSpec("Params")
Result = TypeVar("Result")


def demo_mode_on() -> bool:
    return bool(settings.DEBUG and getattr(settings, "DEMO_MODE", False))


def demo_mode_only(view: Callable[Params, Result]) -> Callable[Params, Result]:
    """A plain view that does not exist (404) outside demo mode."""

    @wraps(view)
    def wrapper(*args: Params.args, **kwargs: Params.kwargs) -> Result:
        if not demo_mode_on():
            raise Http404("Demo mode is off.")
        return view(*args, **kwargs)

    return wrapper


class DemoModeOnly(APIView):
    """A DRF view that does not exist (404) outside demo mode, checked before anything else."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        if not demo_mode_on():
            raise Http404("Demo mode is off.")
        super().initial(request, *args, **kwargs)
