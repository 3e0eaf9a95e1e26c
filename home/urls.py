from __future__ import annotations

from django.urls import path

from home import story_api, views

app_name = "home"

urlpatterns = [
    path("", views.front_page, name="front-page"),
    path("demo/sign-in/", views.sign_in, name="sign-in"),
    path("demo/story/", story_api.StoryRuns.as_view(), name="story-runs"),
    path("demo/story/<str:customer_id>", story_api.StoryState.as_view(), name="story-state"),
    path(
        "demo/without-idempotency/payments",
        story_api.PaymentsWithoutIdempotency.as_view({"post": "create"}),
        name="payments-without-idempotency",
    ),
]
