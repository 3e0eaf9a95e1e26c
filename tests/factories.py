from __future__ import annotations

import uuid
from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from idempotency.models import IdempotencyRecord


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")


class IdempotencyRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IdempotencyRecord

    scope = "anonymous"
    key = factory.Sequence(lambda n: f"key-{n}")
    fingerprint = "0" * 64
    method = "POST"
    path = "/test/widgets"
    state = IdempotencyRecord.State.COMPLETED
    response_status = 201
    response_headers = factory.LazyFunction(lambda: [["Content-Type", "application/json"]])
    response_body = b'{"id": 1}'
    lease_token = factory.LazyFunction(uuid.uuid4)
    locked_until = None
    created_at = factory.LazyFunction(timezone.now)
    completed_at = factory.LazyFunction(timezone.now)
    expires_at = factory.LazyAttribute(lambda record: record.created_at + timedelta(hours=24))

    class Params:
        in_progress = factory.Trait(
            state=IdempotencyRecord.State.IN_PROGRESS,
            response_status=None,
            response_headers=factory.LazyFunction(list),
            response_body=b"",
            completed_at=None,
            locked_until=factory.LazyAttribute(lambda r: r.created_at + timedelta(seconds=60)),
        )
        expired = factory.Trait(
            created_at=factory.LazyFunction(lambda: timezone.now() - timedelta(days=2)),
        )
