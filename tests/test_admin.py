from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from idempotency import admin as admin_module
from idempotency.admin import readable_body
from idempotency.models import IdempotencyRecord
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


def changelist(client, **params):
    with CaptureQueriesContext(connection) as context:
        response = client.get(reverse("admin:idempotency_idempotencyrecord_changelist"), params)
    assert response.status_code == 200
    return response, [q["sql"] for q in context.captured_queries]


def test_the_list_loads_no_body_or_headers(admin_client):
    IdempotencyRecordFactory.create_batch(3)
    _, queries = changelist(admin_client)
    table = IdempotencyRecord._meta.db_table
    selects = [sql for sql in queries if sql.startswith("SELECT") and table in sql]
    assert selects
    assert not [sql for sql in selects if "response_body" in sql or "response_headers" in sql]


def test_search_matches_an_exact_key_or_scope_only(admin_client):
    IdempotencyRecordFactory(key="Pay-1", scope="auth.user:1", path="/payments")
    IdempotencyRecordFactory(key="pay-1", scope="auth.user:2")
    IdempotencyRecordFactory(key="other", scope="auth.user:1")

    def found(term):
        response, _ = changelist(admin_client, q=term)
        return {record.key for record in response.context["cl"].result_list}

    assert found("Pay-1") == {"Pay-1"}  # keys are case-sensitive
    assert found(" pay-1 ") == {"pay-1"}
    assert found("auth.user:1") == {"Pay-1", "other"}
    assert found("Pay") == found("payments") == found("user:1") == set()  # no substrings


def test_the_order_is_newest_first_whatever_the_url_asks(admin_client):
    now = timezone.now()
    for hours, key in [(3, "old"), (1, "new"), (2, "mid")]:
        IdempotencyRecordFactory(key=key, created_at=now - timedelta(hours=hours))
    for params in ({}, {"o": "1"}, {"o": "-2.3"}):
        response, _ = changelist(admin_client, **params)
        assert [r.key for r in response.context["cl"].result_list] == ["new", "mid", "old"]
    # Expired records newest expiry first, on the expiry index (not the creation order).
    IdempotencyRecordFactory(
        key="just gone", created_at=now - timedelta(days=2), expires_at=now - timedelta(minutes=1)
    )
    IdempotencyRecordFactory(
        key="gone", created_at=now - timedelta(days=1), expires_at=now - timedelta(hours=1)
    )
    response, _ = changelist(admin_client, expired="yes")
    assert [r.key for r in response.context["cl"].result_list] == ["just gone", "gone"]


def test_filters_offered_list_their_choices_without_reading_the_table(admin_client):
    IdempotencyRecordFactory.create_batch(3)
    response, queries = changelist(admin_client)
    titles = [spec.title for spec in response.context["cl"].filter_specs]
    assert [str(title) for title in titles] == ["state", "expiry", "created at"]
    table = IdempotencyRecord._meta.db_table
    assert not [sql for sql in queries if table in sql and ("DISTINCT" in sql or "MIN(" in sql)]


def test_the_count_stops_at_the_limit(admin_client, monkeypatch):
    monkeypatch.setattr(admin_module, "COUNT_LIMIT", 3)
    monkeypatch.setattr(admin_module.RecordChangeList, "count_limit", 3)
    IdempotencyRecordFactory.create_batch(5)

    response, queries = changelist(admin_client)

    assert response.context["cl"].result_count == 4  # counted up to the limit, plus one
    assert "Counted up to 3 records: more match." in response.content.decode()
    counts = [sql for sql in queries if sql.startswith("SELECT COUNT(*)")]
    assert len(counts) == 1 and "LIMIT 4" in counts[0]  # no uncapped total count
    response, _ = changelist(admin_client, state__exact="in_progress")
    assert "Counted up to" not in response.content.decode()


def test_deleting_stays_as_it_was(admin_client):
    record = IdempotencyRecordFactory()
    model_admin = admin.site._registry[IdempotencyRecord]
    response, _ = changelist(admin_client)
    assert "delete_selected" in response.content.decode()
    url = reverse("admin:idempotency_idempotencyrecord_delete", args=[record.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert not IdempotencyRecord.objects.exists()
    assert model_admin.has_delete_permission(response.wsgi_request)


def test_long_values_are_cut_in_the_list_and_whole_on_hover(admin_client):
    path = "/api/v1/payments/pmt_000001/refunds/partial?expand=charge"
    key = "3f1c9a2e-7b4d-4e8a-9c1f-000000000001"
    IdempotencyRecordFactory(key=key, path=path, method="PATCH", response_status=201)
    IdempotencyRecordFactory(key="held", in_progress=True)
    page = changelist(admin_client)[0].content.decode()
    assert f'<span title="{key}">3f1c9a2e-7b4d-4e8…</span>' in page
    assert f'<span title="{path}">PATCH /api/v1/payments/pmt_00…</span>' in page
    assert '<td class="field-outcome">201</td>' in page
    assert '<td class="field-outcome">in progress</td>' in page
