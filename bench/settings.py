"""The demo's settings as the benchmark serves them: production-like, plus the bench's routes.

DEBUG off (no query log kept per request), persistent database connections (as any deployment
on PostgreSQL runs them; reconnecting per request would drown the costs being measured), demo
faults off, a middleware that counts the SQL of requests that ask for it, and the bench's own
app (bench.floor: the cheap and hot-row operations, and the floor protocol).
"""

from __future__ import annotations

import os

os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-never-used-in-production")

from config.settings import *  # noqa: E402,F403
from config.settings import DATABASES, INSTALLED_APPS, MIDDLEWARE  # noqa: E402

DEBUG = False
DEMO_FAULTS = False
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "bench.urls"
INSTALLED_APPS = [*INSTALLED_APPS, "bench.floor"]
MIDDLEWARE = ["bench.middleware.QueryCountMiddleware", *MIDDLEWARE]
for _database in DATABASES.values():
    _database["CONN_MAX_AGE"] = None
