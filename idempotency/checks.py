"""System checks: each way a project can misconfigure the library, with a stable ID."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import timedelta
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
        "Remove them from settings.IDEMPOTENCY or correct them; valid keys are: "
        + ", ".join(DEFAULTS)
        + ".",
    ),
    "idempotency.E002": (
        "settings.IDEMPOTENCY[{key!r}] is invalid: {error}",
        "Give settings.IDEMPOTENCY[{key!r}] a value of the type listed in docs/settings.md, "
        "or delete it to use the default.",
    ),
    "idempotency.E003": (
        "settings.IDEMPOTENCY['MAX_KEY_LENGTH'] is {value}; it must be between 1 and 255.",
        "Set IDEMPOTENCY['MAX_KEY_LENGTH'] = 255 (the default) or less: the database column "
        "holds 255 characters.",
    ),
    "idempotency.E004": (
        "settings.IDEMPOTENCY['EXPIRY'] ({expiry:g} s) is not longer than its LEASE ({lease:g} s).",
        "A key would expire while a request still holds it and a retry would run the operation "
        "again. Set IDEMPOTENCY['EXPIRY'] = timedelta(hours=24) (the default), or anything "
        "longer than the lease.",
    ),
    "idempotency.W001": (
        "The database {alias!r} ({vendor}) takes no row locks (SELECT ... FOR UPDATE).",
        "Concurrent retries of one key may fail or race. In production use PostgreSQL, or "
        'for SQLite set DATABASES[{alias!r}]["OPTIONS"]["transaction_mode"] = "IMMEDIATE".',
    ),
    "idempotency.W002": (
        "settings.IDEMPOTENCY['REPLAYED_HEADERS'] lists {names}, which are never replayed.",
        "Remove {names} from IDEMPOTENCY['REPLAYED_HEADERS']: replaying Set-Cookie would hand "
        "one attempt's session to another.",
    ),
    "idempotency.W003": (
        "The idempotency lease of {where} ({lease:g} s) is shorter than {source} ({timeout:g} s).",
        "A request that outlives its lease loses the key to a retry, which runs the operation a "
        "second time. Set {fix} = timedelta(seconds={timeout:g}) or longer.",
    ),
}


def _message(level: Callable[..., CheckMessage], check_id: str, **context: Any) -> CheckMessage:
    msg, hint = MESSAGES[check_id]
    return level(msg.format(**context), hint=hint.format(**context), id=check_id)


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
    lease, expiry = idempotency_settings.LEASE, idempotency_settings.EXPIRY
    if expiry <= lease:
        errors.append(
            _message(
                Error,
                "idempotency.E004",
                expiry=expiry.total_seconds(),
                lease=lease.total_seconds(),
            )
        )
    return errors


@register(Tags.compatibility)
def check_lease_outlives_requests(**kwargs: Any) -> list[CheckMessage]:
    """Every lease must outlast the longest a request may run, as far as the project says."""
    try:
        timeout = known_request_timeout()
        if timeout is None:
            return []
        leases = [
            ("settings.IDEMPOTENCY['LEASE']", "IDEMPOTENCY['LEASE']", idempotency_settings.LEASE)
        ]
    except (ImproperlyConfigured, TypeError, ValueError):
        return []  # check_settings reports invalid settings
    leases.extend(view_leases())
    source, limit = timeout
    return [
        _message(
            Warning,
            "idempotency.W003",
            where=where,
            fix=fix,
            lease=lease.total_seconds(),
            source=source,
            timeout=limit.total_seconds(),
        )
        for where, fix, lease in leases
        if lease < limit
    ]


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


# PostgreSQL's statement_timeout, as set through the connection's ``options`` (libpq's
# ``-c statement_timeout=5s``); a bare number is milliseconds.
_STATEMENT_TIMEOUT = re.compile(r"(?:-c\s*|--)statement[_-]timeout\s*=\s*'?([0-9.]+)\s*([a-z]*)'?")
_UNITS = {"": 0.001, "us": 1e-6, "ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": 86400}


def known_request_timeout() -> tuple[str, timedelta] | None:
    """The longest a request may run, as far as the project tells: the larger of the
    declared ``REQUEST_TIMEOUT`` and the store database's ``statement_timeout`` (one statement
    may run that long, so a request may too)."""
    known: list[tuple[str, timedelta]] = []
    declared = idempotency_settings.REQUEST_TIMEOUT
    if declared is not None:
        known.append(("settings.IDEMPOTENCY['REQUEST_TIMEOUT']", declared))
    alias = RecordStore().using
    statement = statement_timeout(connections[alias].settings_dict)
    if statement is not None:
        known.append((f"the statement_timeout of database {alias!r}", statement))
    return max(known, key=lambda item: item[1], default=None)


def statement_timeout(settings_dict: Mapping[str, Any]) -> timedelta | None:
    if "postgresql" not in str(settings_dict.get("ENGINE", "")):
        return None
    options = str(settings_dict.get("OPTIONS", {}).get("options", ""))
    match = _STATEMENT_TIMEOUT.search(options)
    if match is None or match.group(2) not in _UNITS:
        return None
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    return timedelta(seconds=seconds) if seconds > 0 else None  # 0 turns the timeout off


def view_leases() -> list[tuple[str, str, timedelta]]:
    """``(where, fix, lease)`` for each protected view in the URLconf that sets its own lease."""
    from django.urls import URLPattern, URLResolver, get_resolver

    from idempotency.decorators import IdempotentViewOptions
    from idempotency.mixins import IdempotentMixin

    def walk(patterns: Iterable[Any]) -> Iterator[tuple[str, str, timedelta]]:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                yield from walk(entry.url_patterns)
            elif isinstance(entry, URLPattern):
                callback = entry.callback
                name = getattr(callback, "__qualname__", repr(callback))
                view_class = getattr(callback, "cls", None)
                options = getattr(callback, "idempotency", None)
                lease: timedelta | None = None
                if isinstance(view_class, type) and issubclass(view_class, IdempotentMixin):
                    initkwargs = getattr(callback, "initkwargs", {})
                    lease = initkwargs.get("idempotency_lease", view_class.idempotency_lease)
                    name, fix = (
                        view_class.__qualname__,
                        f"{view_class.__qualname__}.idempotency_lease",
                    )
                elif isinstance(options, IdempotentViewOptions):
                    lease, fix = options.lease, f"@idempotent(lease=...) on {name}"
                if lease is not None:
                    yield f"view {name} ({entry.pattern})", fix, lease

    try:
        patterns = get_resolver().url_patterns
    except Exception:  # a broken URLconf is reported by Django's own urls check
        return []
    return sorted(set(walk(patterns)))
