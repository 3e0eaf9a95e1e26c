"""The admin at a day of traffic: a million records, and no page view reads them all.

Each changelist request's SQL is captured and run again under ``EXPLAIN ANALYZE``: no plan may
scan the records table sequentially, nor read more than a small share of its rows (an index
that is walked end to end would pass "no Seq Scan" and still read a million rows).
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from idempotency.admin import COUNT_LIMIT
from idempotency.models import IdempotencyRecord

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

ROWS = 1_000_000
TABLE = IdempotencyRecord._meta.db_table
# 26 hours of traffic with a 24-hour expiry: the oldest ~8% are expired, awaiting the purge.
SPAN = timedelta(hours=26)
# The most rows any plan node may read: 2% of the table. A page and its capped count read
# about COUNT_LIMIT rows; a search matching one row in ten (the anonymous scope) reads ten per
# row it counts.
MAX_ROWS_READ = ROWS // 50


@pytest.fixture(scope="module")
def million_records(django_db_setup, django_db_blocker):
    """A million records, written by one INSERT ... SELECT: seconds, where the ORM takes minutes.

    Scopes: one in ten anonymous, the rest spread over 5,000 users. One in a thousand is still
    in progress (abandoned, awaiting expiry), plus the 50 newest (requests running now).
    """
    now = timezone.now()
    step = SPAN.total_seconds() / ROWS
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {TABLE}
                (scope, key, fingerprint, method, path, state, response_status,
                 response_headers, response_body, lease_token, locked_until,
                 created_at, completed_at, expires_at)
            SELECT
                CASE WHEN i %% 10 = 0 THEN 'anonymous' ELSE 'auth.user:' || (i %% 5000) END,
                md5(i::text), repeat('0', 64),
                CASE WHEN i %% 7 = 0 THEN 'PATCH' ELSE 'POST' END,
                '/api/payments/' || (i %% 100) || '/refunds',
                s.state,
                CASE WHEN s.state = 'completed' THEN 201 END,
                CASE WHEN s.state = 'completed'
                     THEN '[["Content-Type", "application/json"]]' ELSE '[]' END::jsonb,
                convert_to('{{"id": ' || i || ', "status": "succeeded"}}', 'UTF8'),
                NULL, NULL, t.created_at, t.created_at, t.created_at + interval '24 hours'
            FROM generate_series(0, %s - 1) AS i,
                LATERAL (SELECT %s::timestamptz - i * %s * interval '1 second' AS created_at) t,
                LATERAL (SELECT CASE WHEN i %% 1000 = 0 OR i < 50 THEN 'in_progress'
                                     ELSE 'completed' END AS state) s
            """,
            [ROWS, now, step],
        )
        cursor.execute(f"ANALYZE {TABLE}")
    yield now
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TABLE}")


@pytest.fixture
def admin_client(client, django_user_model, million_records):
    user = django_user_model.objects.create_superuser("admin", "a@example.com", "pw")
    client.force_login(user)
    return client


def plan_nodes(plan):
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def explain(sql):
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
        (row,) = cursor.fetchall()
    document = row[0] if isinstance(row[0], list) else json.loads(row[0])
    return document[0]


def rows_read(node):
    """Rows a node produced or threw away, over all its loops."""
    removed = node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
    return (node.get("Actual Rows", 0) + removed) * node.get("Actual Loops", 1)


def record_queries(client, url, params):
    """The SELECTs on the records table one request runs, and how long it took."""
    with CaptureQueriesContext(connection) as context:
        started = time.monotonic()
        response = client.get(url, params)
        elapsed = time.monotonic() - started
    assert response.status_code == 200, response
    queries = [q["sql"] for q in context.captured_queries]
    queries = [sql for sql in queries if sql.startswith("SELECT") and TABLE in sql]
    return response, queries, elapsed


def some_key(**filters):
    return IdempotencyRecord.objects.filter(**filters).values_list("key", flat=True)[:1].get()


def changelist_cases(now):
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "newest first": {},
        "last page": {"p": str(COUNT_LIMIT // 100)},
        "in progress": {"state__exact": "in_progress"},
        "completed": {"state__exact": "completed"},
        "expired": {"expired": "yes"},
        "live": {"expired": "no"},
        "in progress and expired": {"state__exact": "in_progress", "expired": "yes"},
        "created today": {
            "created_at__gte": str(today),
            "created_at__lt": str(today + timedelta(days=1)),
        },
        "search a key": {"q": some_key(state="completed")},
        "search a key, in progress": {
            "q": some_key(state="in_progress"),
            "state__exact": "in_progress",
        },
        "search a user's scope": {"q": "auth.user:42"},
        "search the anonymous scope": {"q": "anonymous"},
        "search nothing found": {"q": "no-such-key"},
    }


def test_no_changelist_request_reads_the_table(admin_client, million_records):
    url = reverse("admin:idempotency_idempotencyrecord_changelist")
    seen = []
    for name, params in changelist_cases(million_records).items():
        response, queries, elapsed = record_queries(admin_client, url, params)
        assert queries, name
        for sql in queries:
            assert "response_body" not in sql and "response_headers" not in sql, (name, sql)
            explained = explain(sql)
            nodes = [n for n in plan_nodes(explained["Plan"]) if n.get("Relation Name") == TABLE]
            assert nodes, (name, sql)
            scans = sorted({n["Node Type"] for n in nodes})
            most = max(rows_read(n) for n in nodes)
            seen.append((name, elapsed, explained["Execution Time"], sql, scans, most))
    # The plans and timings the report quotes (pytest -s).
    for name, elapsed, ms, _, scans, most in seen:
        print(f"{name}: request {elapsed * 1000:.0f} ms; query {ms:.1f} ms, {scans}, read {most}")
    for name, _, _, sql, scans, most in seen:
        assert "Seq Scan" not in scans, (name, sql, scans)
        assert most <= MAX_ROWS_READ, (name, sql, most)


def test_the_count_stops_at_the_limit_and_says_so(admin_client):
    url = reverse("admin:idempotency_idempotencyrecord_changelist")
    response = admin_client.get(url)
    assert response.context["cl"].result_count == COUNT_LIMIT + 1
    assert f"Counted up to {COUNT_LIMIT} records" in response.content.decode()

    response = admin_client.get(url, {"q": "auth.user:42"})
    assert response.context["cl"].result_count == ROWS // 5000  # an exact count
    assert "Counted up to" not in response.content.decode()


def test_the_detail_page_reads_one_record(admin_client):
    record = IdempotencyRecord.objects.only("pk").filter(state="completed").first()
    url = reverse("admin:idempotency_idempotencyrecord_change", args=[record.pk])
    response, queries, _ = record_queries(admin_client, url, {})
    assert "&quot;status&quot;: &quot;succeeded&quot;" in response.content.decode()
    for sql in queries:
        nodes = [n for n in plan_nodes(explain(sql)["Plan"]) if n.get("Relation Name") == TABLE]
        assert max(rows_read(n) for n in nodes) <= 1, sql
