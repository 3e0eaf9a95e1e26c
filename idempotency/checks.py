"""System checks: each way a project can misconfigure the library, with a stable ID."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from idempotency.conf import DEFAULTS, NEVER_REPLAYED_HEADERS, idempotency_settings
from idempotency.store import RecordStore

# One table of messages and hints; IDs are never reused.
MESSAGES: dict[str, tuple[str, str]] = {
    "idempotency.E001": (
        "settings.IDEMPOTENCY has unknown key(s): {keys}.",
        "Remove or correct them; valid keys are: " + ", ".join(DEFAULTS) + ".",
    ),
    "idempotency.E002": (
        "settings.IDEMPOTENCY[{key!r}] is invalid: {error}",
        "See the settings table in docs/settings.md for the expected type.",
    ),
    "idempotency.E003": (
        "settings.IDEMPOTENCY['MAX_KEY_LENGTH'] is {value}; it must be between 1 and 255.",
        "Set it to 255 or less: the database column holds 255 characters.",
    ),
    "idempotency.W001": (
        "The database {alias!r} ({vendor}) takes no row locks (SELECT ... FOR UPDATE).",
        "Concurrent retries of one key may fail or race. In production use PostgreSQL, or "
        'for SQLite set DATABASES[alias]["OPTIONS"]["transaction_mode"] = "IMMEDIATE".',
    ),
    "idempotency.W002": (
        "settings.IDEMPOTENCY['REPLAYED_HEADERS'] lists {names}, which are never replayed.",
        "Remove them: replaying Set-Cookie would hand one attempt's session to another.",
    ),
}


def _message(level: Callable[..., CheckMessage], check_id: str, **context: Any) -> CheckMessage:
    msg, hint = MESSAGES[check_id]
    return level(msg.format(**context), hint=hint, id=check_id)


@register(Tags.compatibility)
def check_settings(**kwargs: Any) -> list[CheckMessage]:
    unknown = idempotency_settings.unknown_keys()
    if unknown:
        return [_message(Error, "idempotency.E001", keys=", ".join(unknown))]
    errors: list[CheckMessage] = []
    for key in DEFAULTS:
        try:
            getattr(idempotency_settings, key)
        except (ImproperlyConfigured, ImportError, TypeError, ValueError) as exc:
            errors.append(_message(Error, "idempotency.E002", key=key, error=exc))
    if errors:
        return errors
    if not 1 <= idempotency_settings.MAX_KEY_LENGTH <= 255:
        errors.append(
            _message(Error, "idempotency.E003", value=idempotency_settings.MAX_KEY_LENGTH)
        )
    never = [
        name
        for name in idempotency_settings.REPLAYED_HEADERS
        if name.lower() in NEVER_REPLAYED_HEADERS
    ]
    if never:
        errors.append(_message(Warning, "idempotency.W002", names=", ".join(never)))
    return errors


@register(Tags.database)
def check_row_locks(**kwargs: Any) -> list[CheckMessage]:
    if settings.DEBUG:
        return []
    connection = connections[RecordStore().using]
    if connection.vendor == "sqlite":
        # SQLite locks the whole file; IMMEDIATE transactions take that lock up front, which
        # serializes key decisions as row locks would.
        mode = str(connection.settings_dict.get("OPTIONS", {}).get("transaction_mode", ""))
        if mode.upper() in ("IMMEDIATE", "EXCLUSIVE"):
            return []
    elif connection.features.has_select_for_update:
        return []
    return [_message(Warning, "idempotency.W001", alias=connection.alias, vendor=connection.vendor)]
