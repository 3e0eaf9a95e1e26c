from __future__ import annotations

import pytest
from django.urls import reverse

from idempotency.admin import readable_body
from tests.factories import IdempotencyRecordFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("admin", "a@example.com", "pw")
    client.force_login(user)
    return client


def test_changelist_searches_by_key_and_filters(admin_client):
    IdempotencyRecordFactory(key="pay_8f7a9c2")
    IdempotencyRecordFactory(key="order_abc123", in_progress=True)
    IdempotencyRecordFactory(key="old", expired=True)
    url = reverse("admin:idempotency_idempotencyrecord_changelist")

    page = admin_client.get(url, {"q": "pay_8f7a9c2"}).content.decode()
    assert "pay_8f7a9c2" in page and "order_abc123" not in page

    page = admin_client.get(url, {"state__exact": "in_progress"}).content.decode()
    assert "order_abc123" in page and "pay_8f7a9c2" not in page

    page = admin_client.get(url, {"expired": "yes"}).content.decode()
    assert ">old<" in page and "pay_8f7a9c2" not in page
    page = admin_client.get(url, {"expired": "no"}).content.decode()
    assert ">old<" not in page and "pay_8f7a9c2" in page


def test_detail_is_read_only_and_shows_the_body_readably(admin_client):
    record = IdempotencyRecordFactory(response_body=b'{"paymentId": "pmt_456", "amount": 100}')
    url = reverse("admin:idempotency_idempotencyrecord_change", args=[record.pk])
    page = admin_client.get(url).content.decode()
    assert "&quot;paymentId&quot;: &quot;pmt_456&quot;" in page
    assert 'name="key"' not in page  # no editable inputs
    assert admin_client.post(url, {"key": "changed"}).status_code == 403
    record.refresh_from_db()
    assert record.key != "changed"


def test_no_add(admin_client):
    assert admin_client.get(reverse("admin:idempotency_idempotencyrecord_add")).status_code == 403


def test_readable_body():
    assert readable_body(b'{"a":1}') == '{\n  "a": 1\n}'
    assert readable_body(b"plain") == "plain"
    assert readable_body(b"\xff\xfe") == "<2 bytes of binary data>"
