"""A fingerprint the record can store on every database, checked before anything is stored.

The default fingerprints are 64 hex digits; a custom one (``FINGERPRINT_FUNCTION``, a view's
``get_idempotency_fingerprint()``, ``@idempotent(fingerprint=...)``) may return anything. Left to
the database, a longer one was a ``DataError`` (a 500 naming no cause) on PostgreSQL and MariaDB
and stored silently on SQLite.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

# The database column's length, in characters.
MAX_FINGERPRINT_LENGTH = 64
_SOURCE = (
    "The request fingerprint (settings.IDEMPOTENCY['FINGERPRINT_FUNCTION'], a view's "
    "get_idempotency_fingerprint() or @idempotent(fingerprint=...))"
)


class InvalidFingerprint(ImproperlyConfigured, ValueError):
    """A fingerprint no database could store alike: empty, too long, or not printable."""


def checked_fingerprint(fingerprint: object) -> str:
    if not isinstance(fingerprint, str):
        raise TypeError(f"{_SOURCE} must be a str, not {type(fingerprint).__name__}.")
    if not fingerprint or len(fingerprint) > MAX_FINGERPRINT_LENGTH:
        raise InvalidFingerprint(
            f"{_SOURCE} is {len(fingerprint)} characters long; it must be 1 to "
            f"{MAX_FINGERPRINT_LENGTH} (a hex SHA-256 is 64): hash what it describes."
        )
    if not fingerprint.isprintable():
        raise InvalidFingerprint(
            f"{_SOURCE} holds characters that are not printable, which not every database "
            "stores: return a hex digest."
        )
    return fingerprint
