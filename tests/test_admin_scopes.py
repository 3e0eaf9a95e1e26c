"""Scopes shown as what they name: a page's scopes resolved at once, one query per model."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from idempotency.admin import IdempotencyRecordAdmin
from idempotency.scope_labels import model_scope_labels, parse_model_scope
from tests.factories import IdempotencyRecordFactory, UserFactory
from tests.testapp.models import Widget

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:idempotency_idempotencyrecord_changelist"


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw")


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def scope_of(obj):
    return f"{obj._meta.label_lower}:{obj.pk}"


def records_of(users, widgets=()):
    for owner in [*users, *widgets]:
        IdempotencyRecordFactory.create_batch(2, scope=scope_of(owner))
    IdempotencyRecordFactory(scope="anonymous")
    IdempotencyRecordFactory(scope="nope.model:1")  # no such model
    IdempotencyRecordFactory(scope="auth.user:x1")
    IdempotencyRecordFactory(scope="auth.user:999999")  # deleted since
    IdempotencyRecordFactory(scope="tenant:acme")  # a SCOPE_FUNCTION of the project's own
    IdempotencyRecordFactory(scope="service-account:payments-reconciliation")  # long: cut


def changelist_queries(client):
    with CaptureQueriesContext(connection) as context:
        response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    return response.content.decode(), [q["sql"] for q in context.captured_queries]


def test_scopes_show_as_the_users_and_objects_they_name(admin_client):
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    widget = Widget.objects.create(name="blue widget")
    records_of([alice, bob], [widget])

    page, _ = changelist_queries(admin_client)

    assert f'title="auth.user:{alice.pk}">alice</a>' in page
    assert f'title="auth.user:{bob.pk}">bob</a>' in page
    assert f'title="testapp.widget:{widget.pk}">Widget object ({widget.pk})</a>' in page
    for unknown in ("anonymous", "nope.model:1", "auth.user:x1", "auth.user:999999",
                    "tenant:acme"):  # fmt: skip
        assert f'title="{unknown}">{unknown}</a>' in page
    long = "service-account:payments-reconciliation"
    assert f'title="{long}">service-account:pay…</a>' in page  # in full on hover
    # Each name links to a search for that scope's records.
    assert f'href="?q=auth.user%3A{alice.pk}"' in page


def test_a_page_of_scopes_costs_one_query_per_model_not_per_row(admin_client, superuser):
    records_of(UserFactory.create_batch(2), [Widget.objects.create(name="w")])
    _, few = changelist_queries(admin_client)
    records_of(UserFactory.create_batch(30), Widget.objects.bulk_create([Widget(name="x")] * 10))
    _, many = changelist_queries(admin_client)

    assert len(many) == len(few)
    tables = [f'FROM "{model._meta.db_table}"' for model in (type(superuser), Widget)]
    many = [sql.replace("`", '"') for sql in many]  # MySQL quotes with backticks
    names = [sql for sql in many if any(table in sql for table in tables)]
    assert len(names) == 3, names  # the session's user; the page's users; the page's widgets
    assert sum(tables[1] in sql for sql in names) == 1


def test_the_hook_gets_the_whole_page_at_once(admin_client, monkeypatch):
    records_of([UserFactory(username="carol")])
    calls = []

    def tenant_names(self, request, scopes):
        calls.append(set(scopes))
        return {"tenant:acme": "Acme Corp."}

    monkeypatch.setattr(IdempotencyRecordAdmin, "get_scope_labels", tenant_names)
    page, _ = changelist_queries(admin_client)

    assert len(calls) == 1 and "tenant:acme" in calls[0] and len(calls[0]) == 7
    assert 'title="tenant:acme">Acme Corp.</a>' in page
    assert ">carol<" not in page  # the override replaced the default


def test_only_models_the_admin_user_may_view_are_named(client):
    staff = UserFactory(username="auditor", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_idempotencyrecord"))
    alice = UserFactory(username="alice")
    records_of([alice])
    client.force_login(staff)

    page, _ = changelist_queries(client)

    assert f'title="auth.user:{alice.pk}">auth.user:{alice.pk}</a>' in page
    assert ">alice<" not in page


def test_the_detail_page_names_the_scope(admin_client):
    record = IdempotencyRecordFactory(scope=scope_of(UserFactory(username="dave")))
    url = reverse("admin:idempotency_idempotencyrecord_change", args=[record.pk])
    page = admin_client.get(url).content.decode()
    assert record.scope in page and ">dave<" in page


def test_parse_model_scope():
    user = UserFactory()
    model, pk = parse_model_scope(f"auth.user:{user.pk}")
    assert (model._meta.label_lower, pk) == ("auth.user", user.pk)
    for scope in ("anonymous", "auth.user", "auth:1", "a.b.c:1", "auth.nope:1", "auth.user:x", ""):
        assert parse_model_scope(scope) == (None, None), scope


def test_model_scope_labels_without_view_permission_names_nothing(superuser):
    user = UserFactory(username="erin")
    assert model_scope_labels(superuser, [scope_of(user)]) == {scope_of(user): "erin"}
    assert model_scope_labels(UserFactory(), [scope_of(user)]) == {}
