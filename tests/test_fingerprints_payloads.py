"""Fingerprints of consumer payloads (``run_once(..., fingerprint=payload)``) and their cost.

Equal payloads fingerprint equally in every process, whatever the hash seed; what cannot be
encoded by value is refused with ``TypeError``; no number, however large, is costly or fatal.
"""

from __future__ import annotations

import enum
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from idempotency.fingerprints import canonical, hash_document, request_fingerprint
from idempotency.models import IdempotencyRecord
from idempotency.operations import run_once
from tests.testapp.fingerprint_views import DecimalJSONParser

ROOT = Path(__file__).resolve().parent.parent


def fingerprint(payload):
    return hash_document(canonical(payload))


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Size(enum.IntEnum):
    ONE = 1


@dataclass(frozen=True)
class Charge:
    id: str
    amount: Decimal
    tags: frozenset[str]
    seen: int = field(default=0, compare=False)


# Built the same way here and in the subprocesses below.
PAYLOAD_SOURCE = """
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from uuid import UUID
from tests.test_fingerprints_payloads import Charge, Colour, Size
PAYLOAD = {
    "tags": {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"},
    "frozen": frozenset({("a", 1), ("b", 2), ("c", 3)}),
    "mixed": {1, "1", 2.5, None, Decimal("2.50"), b"raw"},
    "charge": Charge("ch_1", Decimal("12.50"), frozenset({"x", "y", "z"})),
    "when": datetime(2026, 11, 30, 8, 0, tzinfo=UTC),
    "naive": datetime(2026, 11, 30, 8, 0),
    "day": date(2026, 11, 30),
    "at": time(8, 0, 1),
    "within": timedelta(hours=1),
    "id": UUID("3f2c8a1e-0d4b-4c52-9a51-6f0e2b7c9d10"),
    "colour": Colour.RED,
    "size": Size.ONE,
    "by_number": {3: "c", 1: "a", 2: "b"},
    "pair": (1, 2),
}
"""


def build_payload():
    namespace: dict = {}
    exec(PAYLOAD_SOURCE, namespace)
    return namespace["PAYLOAD"]


def fingerprint_in_a_subprocess(seed):
    script = (
        "import django, os\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.settings'\n"
        "django.setup()\n"
        + PAYLOAD_SOURCE
        + "from idempotency.fingerprints import canonical, hash_document\n"
        "print(hash_document(canonical(PAYLOAD)))\n"
    )
    environment = {**os.environ, "PYTHONHASHSEED": seed}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return result.stdout.strip()


@pytest.mark.django_db(transaction=True)
def test_a_payload_fingerprints_alike_in_processes_with_other_hash_seeds():
    run_once(lambda: "done", scope="webhooks:test", key="evt_1", fingerprint=build_payload())
    stored = IdempotencyRecord.objects.get().fingerprint

    seen = {fingerprint_in_a_subprocess(seed) for seed in ("0", "1", "2", "3", "random")}

    assert seen == {stored}
    # The redelivery in this process replays instead of being refused as another payload.
    again = run_once(
        lambda: "twice", scope="webhooks:test", key="evt_1", fingerprint=build_payload()
    )
    assert again == "done"


class Opaque:
    """No __eq__ and no __repr__: only its address tells instances apart."""


@pytest.mark.django_db(transaction=True)
def test_run_once_refuses_a_payload_it_cannot_encode_by_value_and_runs_nothing():
    calls = []
    with pytest.raises(TypeError, match="Opaque"):
        run_once(
            lambda: calls.append(1),
            scope="webhooks:test",
            key="evt_2",
            fingerprint={"event": Opaque()},
        )
    assert calls == []
    assert not IdempotencyRecord.objects.exists()


def test_what_cannot_be_encoded_by_value_raises_type_error():
    cyclic: list = []
    cyclic.append(cyclic)
    for value in (Opaque(), object(), 1j, cyclic, {"f": lambda: None}, {Opaque(): 1}):
        with pytest.raises(TypeError):
            canonical(value)


def test_equal_payloads_are_equal_and_different_ones_differ():
    payload = build_payload()
    assert fingerprint(payload) == fingerprint(build_payload())

    # Sets by content, in any insertion order; tuples are lists (as in the stored result).
    assert fingerprint({"b", "a", "c"}) == fingerprint({"c", "a", "b"})
    assert fingerprint(frozenset({1, 2})) == fingerprint({2, 1})
    assert fingerprint((1, [2, 3])) == fingerprint([1, (2, 3)])
    # Aware datetimes by instant, in whatever zone.
    paris = timezone(timedelta(hours=1))
    noon = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert fingerprint(noon) == fingerprint(noon.astimezone(paris))
    assert fingerprint(datetime.min.replace(tzinfo=paris)) != fingerprint(noon)  # no overflow
    # A field that takes no part in equality takes no part in the fingerprint.
    charge = Charge("ch_1", Decimal("1.00"), frozenset())
    assert fingerprint(charge) == fingerprint(Charge("ch_1", Decimal("1.00"), frozenset(), 9))

    different = [
        1,
        1.0,
        True,
        "1",
        Decimal("1"),
        Decimal("1.0"),
        Size.ONE,
        [1],
        {1},
        {"1": 1},
        {1: 1},
        b"1",
        uuid.UUID(int=1),
        date(2026, 1, 1),
        datetime(2026, 1, 1),
        datetime(2026, 1, 1, tzinfo=UTC),
        timedelta(seconds=1),
        Colour.RED,
        "red",
        charge,
        Charge("ch_1", Decimal("1.0"), frozenset()),
        {"id": "ch_1", "amount": Decimal("1.00"), "tags": frozenset()},
        None,
    ]
    assert len({fingerprint(value) for value in different}) == len(different)


# 5. Numbers that used to be costly or fatal ----------------------------------------------------

HOSTILE_NUMBERS = [
    Decimal("1e300000"),
    Decimal("-1e-300000"),
    Decimal("9" * 5000),
    10**4299,  # just within Python's default int-to-str limit
    -(2**65536),  # far beyond it
    float("nan"),
    float("inf"),
    -0.0,
    Decimal("NaN"),
    Decimal("-Infinity"),
    Decimal("-0"),
]


@pytest.mark.parametrize("number", HOSTILE_NUMBERS, ids=lambda number: type(number).__name__)
def test_any_number_fingerprints_in_well_under_a_millisecond(number):
    payload = {"amount": number, "items": [number, {"n": number}]}
    assert fingerprint(payload) == fingerprint(payload)  # never raises
    loops = 200
    started = time.perf_counter()
    for _ in range(loops):
        fingerprint(payload)
    per_call = (time.perf_counter() - started) / loops
    # A guard against quadratic work (1e300000 once took seconds), not a benchmark.
    assert per_call < 0.001


@pytest.mark.parametrize("text", ["1e5000", "1e300000", "-1e-300000", "1" * 4000 + ".5"])
def test_a_huge_decimal_parsed_by_drf_fingerprints_quickly(text):
    django_request = APIRequestFactory().post(
        "/amounts/", '{"amount": ' + text + "}", content_type="application/json"
    )
    request = Request(django_request, parsers=[DecimalJSONParser()])
    assert isinstance(request.data["amount"], Decimal)
    loops = 200
    started = time.perf_counter()
    for _ in range(loops):
        request_fingerprint(request)
    assert (time.perf_counter() - started) / loops < 0.001
