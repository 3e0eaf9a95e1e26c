"""A fingerprint the record can store on every database, checked before anything is stored.

The default fingerprints are 64 hex digits; a custom one (``FINGERPRINT_FUNCTION``, a view's
``get_idempotency_fingerprint()``, ``@idempotent(fingerprint=...)``) may return anything. Left to
the database, a longer one was a ``DataError`` (a 500 naming no cause) on PostgreSQL and MariaDB
and stored silently on SQLite.
"""

from __future__ import annotations

import re

from django.core.exceptions import ImproperlyConfigured

# The database column's length, in characters.
MAX_FINGERPRINT_LENGTH = 64
# What some database cannot store in the column: NUL (PostgreSQL) and lone surrogates (no UTF-8
# encoding). Anything else (a tab, a no-break space, a joined emoji) is stored alike everywhere
# and was accepted before this check: refusing it would turn a working view into a 500.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
_SOURCE = (
    "The request fingerprint (settings.IDEMPOTENCY['FINGERPRINT_FUNCTION'], a view's "
    "get_idempotency_fingerprint() or @idempotent(fingerprint=...))"
)


class InvalidFingerprint(ImproperlyConfigured, ValueError):
    """A fingerprint no database could store alike: empty, too long, a NUL or a lone
    surrogate."""


def checked_fingerprint(fingerprint: object) -> str:
    if not isinstance(fingerprint, str):
        raise TypeError(f"{_SOURCE} must be a str, not {type(fingerprint).__name__}.")
    if not fingerprint or len(fingerprint) > MAX_FINGERPRINT_LENGTH:
        raise InvalidFingerprint(
            f"{_SOURCE} is {len(fingerprint)} characters long; it must be 1 to "
            f"{MAX_FINGERPRINT_LENGTH} (a hex SHA-256 is 64): hash what it describes."
        )
    # Printable ASCII (every default fingerprint) holds neither: the scan is for the rest.
    if not (fingerprint.isascii() and fingerprint.isprintable()) and _UNSTORABLE.search(
        fingerprint
    ):
        raise InvalidFingerprint(
            f"{_SOURCE} holds a NUL character or a lone surrogate, which not every database "
            "stores: return a hex digest."
        )
    return fingerprint
