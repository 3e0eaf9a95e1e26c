"""``IdempotentMixin.idempotency_key`` / ``idempotency_scope``: the current request's key."""

from __future__ import annotations

import pytest
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from idempotency.mixins import IdempotentMixin
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


class KeyEchoView(IdempotentMixin, APIView):
    """Answers with what the operation saw of the key and scope."""

    permission_classes = [AllowAny]
    idempotency_required = False

    def post(self, request):
        return Response({"key": self.idempotency_key, "scope": self.idempotency_scope})


def post(headers, user=None):
    request = APIRequestFactory().post("/echo", {"a": 1}, format="json", headers=headers)
    if user is not None:
        force_authenticate(request, user)
    response = KeyEchoView.as_view()(request)
    return response.data if hasattr(response, "data") else response


def test_the_operation_sees_the_key_it_holds_and_its_scope():
    user = UserFactory()

    seen = post({"Idempotency-Key": '"abc"'}, user=user)

    # The parsed key (the structured-field quotes gone) and the scope it was reserved in.
    assert seen == {"key": "abc", "scope": f"auth.user:{user.pk}"}


def test_anonymous_callers_share_the_anonymous_scope():
    assert post({"Idempotency-Key": "k1"}) == {"key": "k1", "scope": "anonymous"}


def test_without_a_key_both_are_none():
    assert post({}) == {"key": None, "scope": None}
