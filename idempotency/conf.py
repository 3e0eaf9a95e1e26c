"""The ``IDEMPOTENCY`` settings dict, read live so ``override_settings`` works."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from idempotency import options

if TYPE_CHECKING:
    from rest_framework.request import Request

SETTING_NAME = "IDEMPOTENCY"

DEFAULTS: dict[str, Any] = {
    # Request header that carries the key (IETF draft "The Idempotency-Key HTTP Header Field").
    "HEADER": "Idempotency-Key",
    # HTTP methods the mixin protects unless a view says otherwise.
    "METHODS": ("POST", "PATCH"),
    # Whether a protected request without a key is refused with 400.
    "REQUIRED": True,
    # How long a stored outcome is replayed; after that the key is treated as new.
    "EXPIRY": timedelta(hours=24),
    # How long a reservation holds the key before a retry may take it over (its holder died).
    "LEASE": timedelta(seconds=60),
    # The Retry-After hint of a 409 "in progress": when a duplicate should come back (at least
    # 1 s, never past the holder's lease).
    "RETRY_AFTER": timedelta(seconds=1),
    # How long a duplicate that finds its key in progress waits for the holder's outcome before
    # answering 409 (0: not at all). It polls, holding no transaction or lock meanwhile.
    "WAIT": timedelta(0),
    # The most requests of one process that wait at once; past it a duplicate gets 409 at once.
    "MAX_WAITERS": 16,
    # The longest a request may run (your server's timeout), if you declare it: checked against
    # every lease (idempotency.W003), since a request that outlives its lease runs twice.
    "REQUEST_TIMEOUT": None,
    # Longest key accepted, in characters (the database column holds 255).
    "MAX_KEY_LENGTH": 255,
    # The largest response body stored for replay, in bytes (a streamed body is read up to it);
    # past it the operation's writes roll back and the client gets a 500 problem.
    "MAX_STORED_BODY": 10 * 1024 * 1024,
    # Response headers stored and replayed (Content-Type always); never Set-Cookie or Date.
    "REPLAYED_HEADERS": ("Content-Type", "Content-Disposition", "Location", "ETag", "Link"),
    # Dotted path to ``f(request) -> str``: whose keys these are (default: the user).
    "SCOPE_FUNCTION": "idempotency.scopes.user_scope",
    # Dotted path to ``f(request) -> str``: what makes two requests "the same" operation.
    "FINGERPRINT_FUNCTION": "idempotency.fingerprints.request_fingerprint",
    # Prefix of the RFC 9457 ``type`` URI of each problem the library answers.
    "PROBLEM_TYPE_BASE": "urn:django-idempotency:problem:",
}

# Headers that must never be replayed to another attempt, whatever the settings say.
NEVER_REPLAYED_HEADERS = frozenset({"set-cookie", "date"})

ScopeFunction = Callable[["Request"], str]
FingerprintFunction = Callable[["Request"], str]


class IdempotencySettings:
    """Typed access to ``settings.IDEMPOTENCY`` merged over :data:`DEFAULTS`.

    Each value goes through the conversion of its kind in :mod:`idempotency.options`, the same
    that per-view and per-call values go through. Values are cached per attribute and the cache
    is dropped whenever the setting changes (``override_settings``), so tests and
    reconfiguration always see the live value.
    """

    @property
    def user_settings(self) -> Mapping[Any, Any]:
        value = getattr(settings, SETTING_NAME, {})
        if not isinstance(value, Mapping):
            raise ImproperlyConfigured(
                f"settings.{SETTING_NAME} must be a dict, not {type(value).__name__} {value!r}."
            )
        return value

    def unknown_keys(self) -> list[str]:
        # repr, not the key itself: a garbage key (an int, a tuple) is named, not sorted against
        # strings.
        return sorted(
            key if isinstance(key, str) else repr(key)
            for key in self.user_settings
            if key not in DEFAULTS
        )

    def _get(self, name: str) -> Any:
        unknown = self.unknown_keys()
        if unknown:
            raise ImproperlyConfigured(
                f"Unknown key(s) in settings.{SETTING_NAME}: {', '.join(unknown)}. "
                f"Valid keys: {', '.join(DEFAULTS)}."
            )
        return self.user_settings.get(name, DEFAULTS[name])

    @staticmethod
    def _where(name: str) -> str:
        return f"settings.{SETTING_NAME}[{name!r}]"

    @cached_property
    def HEADER(self) -> str:
        return options.header_name(self._get("HEADER"), self._where("HEADER"))

    @cached_property
    def METHODS(self) -> frozenset[str]:
        return options.methods(self._get("METHODS"), self._where("METHODS"))

    @cached_property
    def REQUIRED(self) -> bool:
        return options.flag(self._get("REQUIRED"), self._where("REQUIRED"))

    @cached_property
    def EXPIRY(self) -> timedelta:
        return options.duration(self._get("EXPIRY"), self._where("EXPIRY"))

    @cached_property
    def LEASE(self) -> timedelta:
        return options.duration(self._get("LEASE"), self._where("LEASE"))

    @cached_property
    def RETRY_AFTER(self) -> timedelta:
        return options.duration(self._get("RETRY_AFTER"), self._where("RETRY_AFTER"))

    @cached_property
    def WAIT(self) -> timedelta:
        return options.wait_duration(self._get("WAIT"), self._where("WAIT"))

    @cached_property
    def MAX_WAITERS(self) -> int:
        return options.count(self._get("MAX_WAITERS"), self._where("MAX_WAITERS"))

    @cached_property
    def REQUEST_TIMEOUT(self) -> timedelta | None:
        value = self._get("REQUEST_TIMEOUT")
        return options.optional_duration(value, self._where("REQUEST_TIMEOUT"))

    @cached_property
    def MAX_KEY_LENGTH(self) -> int:
        return options.key_length(self._get("MAX_KEY_LENGTH"), self._where("MAX_KEY_LENGTH"))

    @cached_property
    def MAX_STORED_BODY(self) -> int:
        return options.count(
            self._get("MAX_STORED_BODY"), self._where("MAX_STORED_BODY"), minimum=1
        )

    @cached_property
    def REPLAYED_HEADERS(self) -> tuple[str, ...]:
        value = self._get("REPLAYED_HEADERS")
        return options.header_names(value, self._where("REPLAYED_HEADERS"))

    @cached_property
    def SCOPE_FUNCTION(self) -> ScopeFunction:
        value = self._get("SCOPE_FUNCTION")
        return cast(ScopeFunction, options.function(value, self._where("SCOPE_FUNCTION")))

    @cached_property
    def FINGERPRINT_FUNCTION(self) -> FingerprintFunction:
        value = self._get("FINGERPRINT_FUNCTION")
        return cast(
            FingerprintFunction, options.function(value, self._where("FINGERPRINT_FUNCTION"))
        )

    @cached_property
    def PROBLEM_TYPE_BASE(self) -> str:
        return options.text(self._get("PROBLEM_TYPE_BASE"), self._where("PROBLEM_TYPE_BASE"))

    def reload(self) -> None:
        for name in DEFAULTS:
            self.__dict__.pop(name, None)


idempotency_settings = IdempotencySettings()


def _reload_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING_NAME:
        idempotency_settings.reload()


setting_changed.connect(_reload_on_change)
