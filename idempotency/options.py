"""One conversion for each kind of configured value, wherever it is configured.

The same functions read ``settings.IDEMPOTENCY``, a view's ``idempotency_*`` attributes (and
``@action`` initkwargs), ``@idempotent(...)`` options and ``run_once(...)`` arguments, so a value
means the same everywhere and a bad one is refused, loudly, before any request runs. Each
function takes ``where``, the place the value was configured, for the message.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Collection, Mapping
from datetime import timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from django.views.generic import View

# A duration: a timedelta or a real number of seconds.
Duration = timedelta | float

# The methods Django's class-based views dispatch, upper-cased as ``request.method`` is.
HTTP_METHODS = frozenset(name.upper() for name in View.http_method_names)
# An HTTP field name is an RFC 9110 token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Longer than any realistic lease or expiry, and short enough that ``now + duration`` fits.
MAX_DURATION = timedelta(days=1000 * 365)


class InvalidOption(ImproperlyConfigured, ValueError):
    """A configured value the library refuses; ``check_id`` is the system check that reports
    it when it comes from ``settings.IDEMPOTENCY``. Also a ``ValueError`` (or ``TypeError``),
    for callers of ``run_once`` who catch those."""

    check_id = "idempotency.E002"


class OptionTypeError(InvalidOption, TypeError):
    """The value has the wrong type."""


class LoneStringError(OptionTypeError):
    """A string where a collection of strings belongs: ``"POST"`` would read as P, O, S, T."""

    check_id = "idempotency.E006"


class NotPositiveError(InvalidOption):
    """A lease, expiry or timeout of zero or less."""

    check_id = "idempotency.E007"


class UnknownMethodError(InvalidOption):
    """A method name no Django view dispatches: a typo would leave the real method unprotected."""

    check_id = "idempotency.E008"


class KeyLengthError(InvalidOption):
    check_id = "idempotency.E003"


class ExpiryNotAfterLeaseError(InvalidOption):
    """The key would expire while an attempt still holds it."""

    check_id = "idempotency.E009"


def duration(value: object, where: str) -> timedelta:
    """A positive ``timedelta``, from a ``timedelta`` or a real number of seconds."""
    if isinstance(value, bool) or not isinstance(value, timedelta | numbers.Real):
        raise OptionTypeError(f"{where} must be a timedelta or a number of seconds, not {value!r}.")
    if not isinstance(value, timedelta):
        try:
            seconds = float(value)
            if not math.isfinite(seconds):
                raise InvalidOption(f"{where} must be a finite number of seconds, not {value!r}.")
            value = timedelta(seconds=seconds)
        except OverflowError:
            raise InvalidOption(f"{where} is too long: {value!r} seconds.") from None
    if value <= timedelta(0):
        raise NotPositiveError(
            f"{where} must be longer than zero, not {value.total_seconds():g} s."
        )
    if value > MAX_DURATION:
        raise InvalidOption(f"{where} is too long: at most 1000 years, not {value}.")
    return value


def optional_duration(value: object, where: str) -> timedelta | None:
    return None if value is None else duration(value, where)


def strings(value: object, where: str, example: str) -> tuple[str, ...]:
    """The strings of a list, tuple or set; a lone string is refused, not read as characters."""
    if isinstance(value, str | bytes):
        raise LoneStringError(
            f"{where} must be a list or tuple of names such as {example}, not the string "
            f"{value!r}: a string would be read as its single characters."
        )
    if isinstance(value, Mapping) or not isinstance(value, Collection):
        raise OptionTypeError(f"{where} must be a list or tuple such as {example}, not {value!r}.")
    items = tuple(value)
    wrong = [item for item in items if not isinstance(item, str)]
    if wrong:
        raise OptionTypeError(f"{where} must hold strings only, not {wrong[0]!r}.")
    return items


def methods(value: object, where: str) -> frozenset[str]:
    """Upper-cased HTTP method names (``"post"`` is accepted, as DRF's ``@action`` writes it)."""
    names = frozenset(name.upper() for name in strings(value, where, "('POST', 'PATCH')"))
    unknown = sorted(names - HTTP_METHODS)
    if unknown:
        raise UnknownMethodError(
            f"{where} lists {', '.join(map(repr, unknown))}, which no Django view dispatches; "
            f"known methods: {', '.join(sorted(HTTP_METHODS))}."
        )
    return names


def optional_methods(value: object, where: str) -> frozenset[str] | None:
    return None if value is None else methods(value, where)


def header_name(value: object, where: str) -> str:
    if not isinstance(value, str) or _TOKEN.fullmatch(value) is None:
        raise OptionTypeError(
            f"{where} must be an HTTP header name such as 'Location', not {value!r}."
        )
    return value


def header_names(value: object, where: str) -> tuple[str, ...]:
    names = strings(value, where, "('Content-Type', 'Location')")
    for name in names:
        header_name(name, f"each name in {where}")
    return names


def optional_header_names(value: object, where: str) -> tuple[str, ...] | None:
    return None if value is None else header_names(value, where)


def flag(value: object, where: str) -> bool:
    """``True`` or ``False``: ``"false"`` or ``0`` is a mistake, not a choice."""
    if not isinstance(value, bool):
        raise OptionTypeError(f"{where} must be True or False, not {value!r}.")
    return value


def optional_flag(value: object, where: str) -> bool | None:
    return None if value is None else flag(value, where)


def text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise OptionTypeError(f"{where} must be a string, not {value!r}.")
    return value


def wait_duration(value: object, where: str) -> timedelta:
    """A duration of zero (no wait) or more."""
    if not isinstance(value, bool) and value in (0, timedelta(0)):
        return timedelta(0)
    return duration(value, where)


def optional_wait_duration(value: object, where: str) -> timedelta | None:
    return None if value is None else wait_duration(value, where)


def count(value: object, where: str, minimum: int = 0) -> int:
    """A whole number of at least ``minimum`` (of waiters, of bytes)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionTypeError(f"{where} must be a whole number, not {value!r}.")
    if value < minimum:
        raise InvalidOption(f"{where} must be at least {minimum}, not {value}.")
    return value


def key_length(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionTypeError(f"{where} must be a whole number of characters, not {value!r}.")
    if not 1 <= value <= 255:
        raise KeyLengthError(f"{where} must be between 1 and 255, not {value}.")
    return value


def function(value: object, where: str) -> Callable[..., Any]:
    """A callable, or the dotted path of one (imported now)."""
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as error:
            raise InvalidOption(f"{where} does not import: {error}") from error
    if not callable(value):
        raise OptionTypeError(f"{where} must be a dotted path to a callable or one, not {value!r}.")
    return value


def optional_function(value: object, where: str) -> Callable[..., Any] | None:
    return None if value is None else function(value, where)


def expiry_after_lease(lease: timedelta, expiry: timedelta, where: str, fix: str) -> None:
    """Refuse an expiry that ends before the lease: the key would expire while held, and a
    retry would run the operation beside its first attempt."""
    if expiry <= lease:
        raise ExpiryNotAfterLeaseError(
            f"{where}: the expiry ({expiry.total_seconds():g} s) is not longer than the lease "
            f"({lease.total_seconds():g} s), so a retry could run the operation while the first "
            f"attempt still holds the key. Set {fix} longer than the lease "
            f"(the default is timedelta(hours=24)) or shorten the lease."
        )


# A view's idempotency attributes (also ``as_view()`` and ``@action()`` initkwargs), each with
# its conversion; ``None`` falls back to the setting.
VIEW_ATTRIBUTES: dict[str, Callable[[object, str], object]] = {
    "idempotency_methods": optional_methods,
    "idempotency_required": optional_flag,
    "idempotency_lease": optional_duration,
    "idempotency_expiry": optional_duration,
    "idempotency_replayed_headers": optional_header_names,
    "idempotency_retry_after": optional_duration,
    "idempotency_wait": optional_wait_duration,
}


def view_attributes(view: str, values: Mapping[str, object], where: Callable[[str], str]) -> None:
    """Refuse bad idempotency attributes of ``view``; ``where(name)`` says where each was set."""
    for name, convert in VIEW_ATTRIBUTES.items():
        if name in values:
            convert(values[name], where(name))
    lease = optional_duration(values.get("idempotency_lease"), where("idempotency_lease"))
    expiry = optional_duration(values.get("idempotency_expiry"), where("idempotency_expiry"))
    if lease is not None and expiry is not None:
        expiry_after_lease(lease, expiry, view, fix=where("idempotency_expiry"))


def operation_durations(
    lease: object, expiry: object, default_lease: timedelta, default_expiry: timedelta, where: str
) -> tuple[timedelta, timedelta]:
    """The lease and expiry a call uses: its own or the settings', the expiry after the lease."""
    own_lease = optional_duration(lease, f"{where}(lease=...)")
    own_expiry = optional_duration(expiry, f"{where}(expiry=...)")
    if own_lease is None and own_expiry is None:
        return default_lease, default_expiry  # the settings' pair, checked by idempotency.E004
    lease, expiry = own_lease or default_lease, own_expiry or default_expiry
    expiry_after_lease(lease, expiry, f"{where}(...)", fix=f"{where}(expiry=...)")
    return lease, expiry
