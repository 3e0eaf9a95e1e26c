"""The benchmark's own arithmetic and its query counter (bench/); the run itself is bin/bench."""

from __future__ import annotations

import json

import pytest
from django.db import transaction
from django.http import HttpResponse
from django.test import RequestFactory

from bench.middleware import COUNT_HEADER, RESULT_HEADER, QueryCountMiddleware, label
from bench.plan import VARIANTS, rotation
from bench.stats import percentile_ms
from bench.targets import split
from idempotency.models import IdempotencyRecord


def create_in_a_transaction(request):
    with transaction.atomic():
        IdempotencyRecord.objects.filter(key="nothing").exists()
        IdempotencyRecord.objects.filter(key="nothing").update(method="PUT")
    return HttpResponse(b"ok")


@pytest.mark.django_db(transaction=True)
@pytest.mark.not_mysql  # MySQL's transaction control is SET autocommit, not BEGIN
def test_counter_lists_statements_and_transaction_control_of_the_request():
    request = RequestFactory().post("/", headers={COUNT_HEADER: "1"})
    response = QueryCountMiddleware(create_in_a_transaction)(request)

    assert json.loads(response[RESULT_HEADER]) == [
        "default: BEGIN",
        "default: SELECT idempotency_idempotencyrecord",
        "default: UPDATE idempotency_idempotencyrecord",
        "default: COMMIT",
    ]


@pytest.mark.django_db(transaction=True)
def test_requests_that_do_not_ask_are_not_counted():
    response = QueryCountMiddleware(create_in_a_transaction)(RequestFactory().post("/"))
    assert RESULT_HEADER not in response


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ('SELECT "a"."id" FROM "payments_customer" WHERE x', "SELECT payments_customer"),
        ('INSERT INTO "gateway_charge" ("a") VALUES (1)', "INSERT gateway_charge"),
        ('UPDATE "payments_payment" SET a = 1', "UPDATE payments_payment"),
        ('DELETE FROM "t" WHERE id IN (1)', "DELETE t"),
        ('SAVEPOINT "s1"', "SAVEPOINT"),
        ('RELEASE SAVEPOINT "s1"', "RELEASE SAVEPOINT"),
        ("COMMIT", "COMMIT"),
    ],
)
def test_label_names_the_verb_and_the_table(sql, expected):
    assert label(sql) == expected


def test_split_separates_statements_from_transaction_control():
    counted = split(
        [
            "default: SELECT authtoken_token",
            "default: INSERT idempotency_idempotencyrecord",
            "default: BEGIN",
            "default: SAVEPOINT",
            "default: INSERT payments_payment",
            "default: RELEASE SAVEPOINT",
            "default: UPDATE idempotency_idempotencyrecord",
            "default: COMMIT",
            "gateway: INSERT gateway_charge",
        ]
    )
    assert counted["statements"] == 5
    assert counted["transaction_control"] == 4
    assert counted["record_table"] == 2
    assert counted["operation"] == 2


def test_percentile_is_nearest_rank_in_milliseconds():
    ordered = [1000 * value for value in range(1, 101)]  # 1 ms .. 100 ms
    assert percentile_ms(ordered, 50) == 50.0
    assert percentile_ms(ordered, 99) == 99.0
    assert percentile_ms([7000], 99) == 7.0
    assert percentile_ms([], 50) == 0.0


def test_rotation_puts_each_variant_first_in_turn():
    firsts = {rotation(VARIANTS, shift)[0].name for shift in range(len(VARIANTS))}
    assert firsts == {variant.name for variant in VARIANTS}
    assert sorted(v.name for v in rotation(VARIANTS, 2)) == sorted(v.name for v in VARIANTS)
