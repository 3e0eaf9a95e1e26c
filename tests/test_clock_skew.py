"""One clock for every app server: the database's.

Two app processes whose clocks differ by minutes (this test moves ``timezone.now`` in each
process, as a host whose clock runs fast or slow would) share one database. With each host's
own clock, the fast host took over the slow one's live key, and a key reserved by a slow host
looked expired to every other: the operation ran twice. On the database's clock neither takes
over the other's live key.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[1]
SKEW = 300  # seconds: five minutes, beyond a 60 s lease either way

# One app server: its clock off by CLOCK_OFFSET_SECONDS, it asks for the key once and prints
# the store's decision. The clock is moved before the library is imported, as a host's is.
APP_SERVER = """
import datetime, os, sys

import django
from django.utils import timezone

offset = datetime.timedelta(seconds=float(os.environ["CLOCK_OFFSET_SECONDS"]))
host_clock = timezone.now
timezone.now = lambda: host_clock() + offset
django.setup()

from idempotency.store import RecordStore

decision = RecordStore().reserve(
    scope="skew", key=sys.argv[1], fingerprint="f", method="POST", path="/p",
    lease=datetime.timedelta(seconds=60), expiry=datetime.timedelta(hours=1),
)
print(type(decision).__name__, getattr(decision, "taken_over", ""))
"""


def database_url():
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[connection.vendor]
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    host = settings.get("HOST") or "127.0.0.1"
    port = f":{settings['PORT']}" if settings.get("PORT") else ""
    return f"{scheme}://{settings['USER']}{password}@{host}{port}/{settings['NAME']}"


def app_server(offset, key):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "CLOCK_OFFSET_SECONDS": str(offset),
    }
    env.pop("GATEWAY_DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", APP_SERVER, key],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize(
    ("holder", "retry"),
    [
        (0, SKEW),  # the retry's host runs five minutes fast
        (-SKEW, 0),  # the holder's host runs five minutes slow
    ],
    ids=["fast-retrier", "slow-holder"],
)
def test_no_app_server_takes_over_a_live_key_whatever_its_clock(holder, retry):
    assert app_server(holder, "k") == "Reserved False"
    assert app_server(retry, "k") == "InProgress"
