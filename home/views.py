"""``GET /``: the demo's front door, and the demo-mode sign-in its live story uses."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_POST

from demo_api.faults import FAULT_HEADER
from home.demo_mode import DEMO_USERNAME, demo_mode_on, demo_mode_only
from idempotency.conf import idempotency_settings
from idempotency.mixins import REPLAYED_HEADER

# What the story's payment is: one dollar, in minor units.
STORY_AMOUNT = 100
STORY_CURRENCY = "USD"


@require_GET
def front_page(request: HttpRequest) -> HttpResponse:
    demo_mode = demo_mode_on()
    signed_in = request.user.is_authenticated
    story: dict[str, Any] = {
        "ready": demo_mode and signed_in,
        "csrfToken": get_token(request),
        "keyHeader": idempotency_settings.HEADER,
        "replayedHeader": REPLAYED_HEADER,
        "runsUrl": reverse("home:story-runs"),
        "stateUrl": reverse("home:story-state", args=["CUSTOMER"]),
        "withUrl": reverse("payment-list"),
        "withoutUrl": reverse("home:payments-without-idempotency"),
        "amount": STORY_AMOUNT,
        "currency": STORY_CURRENCY,
        "keyPlaceholder": "(made at step 1)",
    }
    return render(
        request,
        "home/index.html",
        {
            "demo_mode": demo_mode,
            "signed_in": signed_in,
            "docs_url": _reverse_or_none("api-docs"),
            "schema_url": _reverse_or_none("schema"),
            "fault_header": FAULT_HEADER,
            "demo_faults": getattr(settings, "DEMO_FAULTS", False),
            "key_header": idempotency_settings.HEADER,
            "story": story,
        },
    )


@require_POST  # and CSRF-protected: no other site can sign a visitor in
@demo_mode_only
def sign_in(request: HttpRequest) -> HttpResponse:
    """Sign the visitor in as the demo user: a session, never a token in the page."""
    user, created = get_user_model().objects.get_or_create(
        username=DEMO_USERNAME, defaults={"email": f"{DEMO_USERNAME}@example.com"}
    )
    if created:
        user.set_unusable_password()  # reachable through this view only, in demo mode only
        user.save(update_fields=["password"])
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return HttpResponseRedirect(reverse("home:front-page") + "#story")


def _reverse_or_none(name: str) -> str | None:
    # The docs come with drf-spectacular (the demo extra); without it the page says so.
    try:
        return reverse(name)
    except NoReverseMatch:
        return None
