"""System checks: each way a project can misconfigure the library, with a stable ID."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections
from django.db.migrations.recorder import MigrationRecorder

from idempotency.collation import column_collations, compares_exactly, exact_collation
from idempotency.conf import DEFAULTS, NEVER_REPLAYED_HEADERS, SETTING_NAME, idempotency_settings
from idempotency.options import InvalidOption
from idempotency.store import RecordStore
from idempotency.urlconf import protected_views

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
    "idempotency.E005": (
        "settings.IDEMPOTENCY is {kind}, not a dict.",
        'Make settings.IDEMPOTENCY a dict, e.g. IDEMPOTENCY = {{"LEASE": timedelta(seconds=60)}}, '
        "or delete it to use the defaults.",
    ),
    "idempotency.E006": (
        "settings.IDEMPOTENCY[{key!r}] is a string where a list belongs: {error}",
        "Write a list: IDEMPOTENCY[{key!r}] = [{value!r}]. A lone string is read as its single "
        "characters, which for METHODS leaves every real method unprotected.",
    ),
    "idempotency.E007": (
        "settings.IDEMPOTENCY[{key!r}] is not a positive duration: {error}",
        "A lease or expiry of zero lets a concurrent duplicate take the key over at once and run "
        "the operation twice. Set IDEMPOTENCY[{key!r}] = {default} (the default) or another "
        "duration longer than zero.",
    ),
    "idempotency.E008": (
        "settings.IDEMPOTENCY[{key!r}] names an unknown HTTP method: {error}",
        "List upper-case method names, e.g. IDEMPOTENCY[{key!r}] = {default} (the default): a "
        "misspelt method leaves the real one unprotected.",
    ),
    "idempotency.E009": (
        "The expiry of {where} is {expiry:g} s, not longer than its lease of {lease:g} s.",
        "A key would expire while a request still holds it and a retry would run the operation "
        "again. Set {fix} = timedelta(hours=24), or anything longer than the lease.",
    ),
    "idempotency.E010": (
        "The column(s) {columns} of {table!r} on database {alias!r} compare case- or "
        "accent-insensitively (collation {collations}): keys that differ only in case replay "
        "each other's outcome and scopes that do share records.",
        "Give them a binary collation: {fix}; or drop the hand-made table and run python "
        "manage.py migrate idempotency.",
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
    "idempotency.W004": (
        "The column(s) {columns} of {table!r} on database {alias!r} compare case- or "
        "accent-insensitively (collation {collations}) until migration {migration} runs.",
        "Run {fix}: it gives them a binary collation.",
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


def _literal(value: object) -> str:
    """A default as the hint suggests typing it."""
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        return (
            f"timedelta(hours={seconds // 3600})"
            if seconds % 3600 == 0
            else (f"timedelta(seconds={seconds})")
        )
    return repr(value)


@register(Tags.compatibility)
def check_settings(**kwargs: Any) -> list[CheckMessage]:
    raw = getattr(settings, SETTING_NAME, {})
    if not isinstance(raw, Mapping):
        return [_message(Error, "idempotency.E005", kind=type(raw).__name__)]
    unknown = idempotency_settings.unknown_keys()
    if unknown:
        return [_message(Error, "idempotency.E001", keys=", ".join(unknown))]
    errors: list[CheckMessage] = []
    for key in DEFAULTS:
        context = {"key": key, "value": raw.get(key), "default": _literal(DEFAULTS[key])}
        try:
            getattr(idempotency_settings, key)
        except InvalidOption as exc:
            errors.append(_message(Error, exc.check_id, error=exc, **context))
        except Exception as exc:  # a check reports, never crashes: a user's module may raise
            error = f"{type(exc).__name__}: {exc}"
            errors.append(_message(Error, "idempotency.E002", error=error, **context))
    if errors:
        return errors
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
    except ImproperlyConfigured:
        return []  # check_settings reports invalid settings
    leases.extend(
        (view.where, view.lease_fix, view.lease)
        for view in protected_views()
        if view.lease is not None
    )
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


@register(Tags.compatibility)
def check_view_expiry_outlives_lease(**kwargs: Any) -> list[CheckMessage]:
    """A view that sets its own lease or expiry must still expire its keys after the lease.

    Both set on one view are refused where they are set; this finds the mix of a view's own
    value with the setting's."""
    try:
        default_lease, default_expiry = idempotency_settings.LEASE, idempotency_settings.EXPIRY
    except ImproperlyConfigured:
        return []  # check_settings reports invalid settings
    messages = []
    for view in protected_views():
        if view.lease is None and view.expiry is None:
            continue  # the settings' own pair: idempotency.E004
        lease, expiry = view.lease or default_lease, view.expiry or default_expiry
        if expiry <= lease:
            messages.append(
                _message(
                    Error,
                    "idempotency.E009",
                    where=view.where,
                    fix=view.expiry_fix,
                    expiry=expiry.total_seconds(),
                    lease=lease.total_seconds(),
                )
            )
    return messages


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


COLLATION_MIGRATION = "0003_exact_key_collation"


@register(Tags.database)
def check_exact_key_collation(**kwargs: Any) -> list[CheckMessage]:
    """On MySQL/MariaDB, the live table's key and scope columns must compare byte for byte.

    A database check, as Django runs them: with ``manage.py check --database default`` and
    before ``migrate``. Before migration 0003 has run it warns (an error would stop the very
    ``migrate`` that fixes it); after, a table still compared insensitively was made or changed
    by hand, and that is an error.
    """
    from idempotency.models import IdempotencyRecord

    alias = RecordStore().using
    if alias not in (kwargs.get("databases") or ()):
        return []
    connection = connections[alias]
    collation = exact_collation(connection)
    if collation is None:
        return []
    table = IdempotencyRecord._meta.db_table
    try:
        live = column_collations(connection, table)
        if not live:
            return []  # not created yet: migrate creates it right
        inexact = {name: value for name, value in live.items() if not compares_exactly(value)}
        if not inexact:
            return []
        applied = MigrationRecorder(connection).applied_migrations()
    except DatabaseError:
        return []  # the database is unreachable: nothing to say about its table
    context = {
        "columns": ", ".join(inexact),
        "collations": ", ".join(str(value) for value in inexact.values()),
        "table": table,
        "alias": connection.alias,
    }
    if ("idempotency", COLLATION_MIGRATION) not in applied:
        fix = f"python manage.py migrate idempotency --database {connection.alias}"
        return [
            _message(Warning, "idempotency.W004", migration=COLLATION_MIGRATION, fix=fix, **context)
        ]
    field_types = {
        name: IdempotencyRecord._meta.get_field(name).db_type(connection) for name in inexact
    }
    modify = ", ".join(
        f"MODIFY `{name}` {field_types[name]} CHARACTER SET utf8mb4 COLLATE {collation} NOT NULL"
        for name in inexact
    )
    fix = f"ALTER TABLE `{table}` {modify}"
    return [_message(Error, "idempotency.E010", fix=fix, **context)]


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
    database_options = settings_dict.get("OPTIONS")
    if not isinstance(database_options, Mapping):
        return None
    options = str(database_options.get("options", ""))
    match = _STATEMENT_TIMEOUT.search(options)
    if match is None or match.group(2) not in _UNITS:
        return None
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    return timedelta(seconds=seconds) if seconds > 0 else None  # 0 turns the timeout off
