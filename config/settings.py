"""Settings of the demo service, read from the environment (or a ``.env`` file).

Defaults are safe for production: DEBUG off, no SECRET_KEY unless DEBUG is on, local hosts only.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Any

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured

# Generic Django classes (ModelAdmin[Payment], ...) as the type checker sees them.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("Set SECRET_KEY in the environment (or DEBUG=true for a demo).")
    SECRET_KEY = "django-insecure-demo-key-for-local-use-only"
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "idempotency",
    "demo_api",
    "gateway",
    "payments",
    "orders",
    "home",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}


def _configure_sqlite(database: dict[str, Any]) -> None:
    if database["ENGINE"] == "django.db.backends.sqlite3":
        # Concurrent use of one SQLite file: take the write lock at BEGIN (no lock upgrades that
        # deadlock), wait for it rather than fail, and let readers run beside the writer (WAL).
        database.setdefault("OPTIONS", {}).update(
            {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            }
        )


def _gateway_database_url() -> str:
    """A file beside the SQLite database (db.sqlite3 -> db.gateway.sqlite3), else the same URL."""
    default = DATABASES["default"]
    if default["ENGINE"] == "django.db.backends.sqlite3":
        name = Path(default["NAME"])
        return f"sqlite:///{name.with_name(f'{name.stem}.gateway{name.suffix}')}"
    return str(env.str("DATABASE_URL"))


# The simulated card gateway is another system: its ledger lives behind a database alias of its
# own, so a charge it made survives a rollback of the payment that asked for it. On SQLite that is
# a file of its own; on PostgreSQL, by default, a second connection to the same database (its own
# transactions). gateway.routers sends the gateway's models there and nothing else.
DATABASES["gateway"] = env.db("GATEWAY_DATABASE_URL", default=_gateway_database_url())
for _alias in DATABASES:
    _configure_sqlite(DATABASES[_alias])
DATABASE_ROUTERS = ["gateway.routers.GatewayRouter"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="shop@example.com")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "demo_api.api.StrictPageNumberPagination",
    "PAGE_SIZE": 20,
}

# OpenAPI schema at /api/schema/ and Swagger UI at /api/docs/, served from local files (the
# sidecar) so they work offline. Both come with the demo extra; without them the API still runs.
OPENAPI_DOCS = all(find_spec(name) for name in ("drf_spectacular", "drf_spectacular_sidecar"))
if OPENAPI_DOCS:
    INSTALLED_APPS += ["drf_spectacular", "drf_spectacular_sidecar"]
    REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] = "demo_api.openapi.DemoAutoSchema"
    SPECTACULAR_SETTINGS = {
        "TITLE": "django-idempotency demo shop",
        "DESCRIPTION": "Payments and orders whose unsafe requests are protected by an "
        "Idempotency-Key header: retries get the first outcome, never a second charge.",
        "VERSION": "1.0.0",
        "SERVE_INCLUDE_SCHEMA": False,
        "SWAGGER_UI_DIST": "SIDECAR",
        "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
        "REDOC_DIST": "SIDECAR",
    }

# Demo only: honour the X-Demo-Fault request header (crash-after-charge, crash-before-commit,
# slow) to replay failures on demand. Never turn it on in production; bin/demo turns it on.
DEMO_FAULTS = env.bool("DEMO_FAULTS", default=False)

# Demo only, and honoured only with DEBUG on too (home.demo_mode): the front page (/) signs a
# visitor in as the demo user, and /demo/without-idempotency/payments serves the payments API
# without idempotency, so the page can play the retry story. bin/demo turns it on.
DEMO_MODE = env.bool("DEMO_MODE", default=False)

# Celery (demo_api/celery.py) runs the demo's tasks: the order confirmation email (orders.tasks).
# Without a broker they run eagerly, in the process that sends them, so bin/demo needs nothing
# more; with one (CELERY_BROKER_URL=amqp://guest:guest@127.0.0.1:5672//, say) a worker runs
# them: celery -A demo_api worker.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or None
CELERY_TASK_ALWAYS_EAGER = CELERY_BROKER_URL is None
# Run eagerly, a failing task raises where it was sent (the order's on-commit hook logs it)
# instead of failing into a result nobody reads.
CELERY_TASK_EAGER_PROPAGATES = True

IDEMPOTENCY = {
    "REQUIRED": True,
    # Seconds a worker holds a key before a retry may take it over (its holder presumed dead).
    # The fault tests shorten it to watch a killed worker's key being taken over.
    "LEASE": env.float("IDEMPOTENCY_LEASE_SECONDS", default=60.0),
    # Seconds a duplicate waits for a running request's outcome before answering 409 (0: off).
    "WAIT": env.float("IDEMPOTENCY_WAIT_SECONDS", default=0.0),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        # Django's own default prints to the console only with DEBUG on (and mails ADMINS, which
        # the demo has none of): without this, a 500 in production left no trace anywhere.
        # django.request logs each unexpected error with its traceback, before the client is
        # answered with a problem (demo_api.errors).
        "django": {
            "handlers": ["console"],
            "level": env.str("DJANGO_LOG_LEVEL", default="INFO"),
        },
        "idempotency": {
            "handlers": ["console"],
            "level": env.str("IDEMPOTENCY_LOG_LEVEL", default="WARNING"),
        },
    },
}
