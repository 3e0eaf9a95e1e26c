"""Reading the key out of the ``Idempotency-Key`` header."""

from __future__ import annotations

import re
from functools import lru_cache

from django.http import HttpRequest
from django.http.request import HttpHeaders
from django.utils.translation import gettext as _
from rest_framework.request import Request

from idempotency.exceptions import IdempotencyKeyInvalid

# An RFC 8941 sf-string: the IETF draft defines the header as a structured-field String.
_SF_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
_SF_ESCAPE = re.compile(r"\\([\"\\])")


def header_value(request: HttpRequest | Request, name: str) -> str | None:
    """The value of header ``name`` in ``request``, as ``request.headers.get(name)`` reads it.

    Read from ``META`` under its WSGI name: ``request.headers`` would normalise every header of
    the request to find one.
    """
    if type(request) is Request:
        # DRF's attribute proxy (a failed lookup, then __getattr__) costs more than the read.
        request = request._request
    value: str | None = request.META.get(_wsgi_name(name))
    return value


@lru_cache(maxsize=32)
def _wsgi_name(name: str) -> str:
    return HttpHeaders.to_wsgi_name(name)


def parse_key(raw: str, max_length: int) -> str:
    """Return the key in ``raw`` (a header value), or raise :class:`IdempotencyKeyInvalid`.

    ``"abc"`` (the structured-field form) and ``abc`` name the same key.
    """
    value = raw.strip(" \t")
    if value.startswith('"'):
        match = _SF_STRING.fullmatch(value)
        if match is None:
            raise IdempotencyKeyInvalid(_("The idempotency key is a malformed quoted string."))
        value = _SF_ESCAPE.sub(r"\1", match.group(1))
    if not value:
        raise IdempotencyKeyInvalid(_("The idempotency key is empty."))
    if len(value) > max_length:
        raise IdempotencyKeyInvalid(
            _("The idempotency key is longer than %(max)d characters.") % {"max": max_length}
        )
    if not _visible_ascii_without_comma(value):
        raise IdempotencyKeyInvalid(
            _(
                "The idempotency key may hold only visible ASCII characters, without commas "
                "(send the header once)."
            )
        )
    return value


def _visible_ascii_without_comma(value: str) -> bool:
    # Visible ASCII (0x21-0x7E) without the comma: a comma is how a repeated header arrives
    # (RFC 9110 5.3). Printable ASCII is 0x20-0x7E, so the space is ruled out by itself.
    return value.isascii() and value.isprintable() and " " not in value and "," not in value


def operation_key(key: object) -> str:
    """The text of a key given to ``run_once``: a str, or an int as its decimal digits.

    Event ids are often integers; any other type (``bool`` included, though it is an ``int``)
    is a programming error, refused with ``TypeError`` rather than stored as its ``repr``.
    """
    if isinstance(key, str):
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    raise TypeError(
        f"The idempotency key must be a str or an int, not {type(key).__name__} {key!r}."
    )
