"""Request fingerprints: what makes a retry "the same request" as the first attempt.

A fingerprint is the hex SHA-256 of a canonical encoding (:func:`canonical`) of what the view
sees: the method, the resolved route and its arguments, the query, the media type and the parsed
body. The encoding is a JSON document in which every value carries its type, so it can be
decoded again: two encodings are equal only when the values are, and no user data can pass for
another type.

- ``str`` is a JSON string; ``None``, ``True`` and ``False`` are JSON literals; an ``int`` is a
  JSON number, or ``["i", hex]`` beyond 2**53 (hex is linear in time and has no digit limit);
- a ``dict`` with ``str`` keys is a JSON object (keys sorted); any other mapping is
  ``["m", key, value, ...]`` with pairs sorted by their encoding;
- every other value is a JSON array whose first item names its type: ``["l", ...]`` a list or a
  tuple, ``["f", repr]`` a float, ``["d", text]`` a ``Decimal``, ``["n", text]`` a JSON number as
  written in a body, ``["set", ...]`` a set or frozenset (sorted), and so on below.

A user string is never an array and a user list is always ``["l", ...]``, so no user value can
look like a tag. Numbers keep their exact text (``1`` is not ``1.0``, ``0.1`` is not ``0.10``):
building it is linear, never converts ``1e300000`` into digits and never raises.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import fields, is_dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from itertools import chain
from typing import Any
from uuid import UUID

from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest
from django.http.request import RawPostDataException
from django.utils.datastructures import MultiValueDict
from rest_framework.request import Request

from idempotency.exceptions import RequestBodyInvalid

_FORM_TYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})
_SMALL_INT = 2**53
_DAY_ONE = datetime.min
# check_circular is off: the encoding is a fresh tree (a cycle in the input ends in RecursionError).
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, check_circular=False
)
# What _ENCODER.encode() builds on every call (C's encoder, with these very arguments), built
# once: encode() and iterencode() are Python, and every fingerprint encodes a document.
_C_MAKE_ENCODER = getattr(json.encoder, "c_make_encoder", None)
_encode_json = (
    None
    if _C_MAKE_ENCODER is None
    else _C_MAKE_ENCODER(
        None,  # markers: check_circular is off
        _ENCODER.default,
        json.encoder.encode_basestring,  # ensure_ascii is off
        None,  # indent
        _ENCODER.key_separator,
        _ENCODER.item_separator,
        _ENCODER.sort_keys,
        _ENCODER.skipkeys,
        _ENCODER.allow_nan,
    )
)


def _dumps(document: object) -> str:
    """``_ENCODER.encode(document)``."""
    if _encode_json is None or isinstance(document, str):
        return _ENCODER.encode(document)
    return "".join(_encode_json(document, 0))


class _JSONNumber(str):
    """A number as written in a JSON body (``0.10``, ``1e5000``, ``NaN``), never converted."""

    __slots__ = ()


def request_fingerprint(request: Request) -> str:
    """The default ``FINGERPRINT_FUNCTION``: the request as a DRF view sees it.

    The body is ``request.data``, hashed after parsing, so key order, whitespace and escapes do
    not matter; ``/payments`` and ``/payments/`` on one pattern are one route, ``/orders/1`` and
    ``/orders/2`` are not. A body that cannot be encoded is refused with ``RequestBodyInvalid``.
    """
    try:
        body = _encode(request.data)
    except RecursionError:
        raise RequestBodyInvalid() from None
    django_request = request._request
    return _hash_request(
        [
            "drf",
            django_request.method,  # what request.method reads, without DRF's attribute proxy
            route_identity(django_request),
            _query(django_request),
            django_request.content_type or "",
            body,
        ]
    )


def http_request_fingerprint(request: HttpRequest) -> str:
    """The same idea for a plain Django view, which has no parsed ``request.data``.

    JSON bodies are compared after parsing, numbers by their exact text (the view may parse them
    as ``Decimal``); form bodies field by field (files by content), as the view reads them from
    ``request.POST`` and ``request.FILES``; any other body, or JSON that does not parse, by its
    bytes and charset.
    """
    return _hash_request(
        [
            "http",
            request.method,
            route_identity(request),
            _query(request),
            request.content_type or "",
            _http_body(request),
        ]
    )


def route_identity(request: Request | HttpRequest) -> list[Any]:
    """The resolved URL pattern and the arguments the view receives; the path if unresolved.

    Arguments are encoded by value. One that a converter turned into something :func:`canonical`
    cannot encode (a model instance, say) is named by the path it was matched from instead,
    which is deterministic, never by its address.
    """
    match = request.resolver_match
    if match is None:
        return ["path", request.path]
    route = match.route or match.view_name
    # Captured arguments only: extra kwargs from the URL conf are fixed per pattern (not in
    # django-stubs yet, hence getattr).
    captured = getattr(match, "captured_kwargs", None)
    kwargs = match.kwargs if captured is None else captured
    if not match.args and type(kwargs) is dict and not kwargs:
        return ["route", route, ["l"], {}]  # what the encoding below gives, without its walk
    try:
        return ["route", route, _encode(match.args), _encode(kwargs)]
    except TypeError:
        return ["route-path", route, request.path_info]


def canonical(value: object) -> Any:
    """``value`` as an unambiguous JSON document, equal for equal values in every process.

    Beside JSON's own types it encodes by value: sets and frozensets (sorted), tuples (as
    lists), mappings with any keys, ``Decimal``, ``float``, ``datetime``, ``date``, ``time``,
    ``timedelta``, ``UUID``, ``bytes``, enums, dataclasses and uploaded files (by content).
    Anything else raises ``TypeError``: it is never hashed by ``repr()`` or address.
    """
    try:
        return _encode(value)
    except RecursionError:
        raise TypeError(
            "cannot fingerprint a value nested this deeply (or holding itself)"
        ) from None


def hash_document(document: object) -> str:
    """Hex SHA-256 of a :func:`canonical` document (lone surrogates hash as themselves)."""
    return hashlib.sha256(_dumps(document).encode("utf-8", "surrogatepass")).hexdigest()


def _hash_request(document: list[Any]) -> str:
    try:
        encoded = _dumps(document).encode()
    except (UnicodeEncodeError, RecursionError):  # a lone surrogate escape ("\udb9d") in the body
        raise RequestBodyInvalid() from None
    return hashlib.sha256(encoded).hexdigest()


def _query(request: HttpRequest) -> Any:
    # Most unsafe requests have no query: its encoding, without the walk of the general case.
    query = request.GET
    return ["multi", {}] if not query else _encode(query)


def _http_body(request: HttpRequest) -> list[Any]:
    media_type = request.content_type or ""
    if media_type in _FORM_TYPES:
        if request.method != "POST":
            # Django parses request.POST for POST only: a PATCH or PUT form counts by its bytes.
            return ["bytes", media_type, hashlib.sha256(request.body).hexdigest()]
        # Read whole first (when it fits), so the view can still read request.body itself (a
        # signature check) after request.POST is parsed from it; a large upload, or one parsed
        # already (by the CSRF middleware), is read as Django reads it.
        with suppress(RequestDataTooBig, RawPostDataException):
            request.body  # noqa: B018
        return ["form", _encode(request.POST), _encode(request.FILES)]
    if media_type == "application/json" or media_type.endswith("+json"):
        try:
            parsed = json.loads(
                request.body,
                parse_float=_JSONNumber,
                parse_int=_JSONNumber,
                parse_constant=_JSONNumber,
            )
            return ["json", _encode(parsed)]
        except (ValueError, RecursionError):
            pass  # not JSON: the view answers it as it sees fit
    charset = (request.content_params or {}).get("charset", "").lower()
    return ["bytes", charset, hashlib.sha256(request.body).hexdigest()]


def _encode(value: Any) -> Any:
    # The common JSON types first, by exact type; subclasses and the rest in _encode_other.
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        return value if -_SMALL_INT < value < _SMALL_INT else ["i", format(value, "x")]
    if kind is dict:
        return _mapping(value)
    if kind is list or kind is tuple:
        return ["l", *map(_encode, value)]
    if kind is float:
        return ["f", float.__repr__(value)]
    return _encode_other(value)


def _encode_other(value: Any) -> Any:
    if isinstance(value, _JSONNumber):
        return ["n", str.__str__(value)]
    if isinstance(value, Enum):
        return ["enum", _type_name(value), _encode(value.value)]
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return _encode(int.__int__(value))
    if isinstance(value, float):
        return ["f", float.__repr__(value)]
    if isinstance(value, Decimal):
        return ["d", Decimal.__str__(value)]
    if isinstance(value, MultiValueDict):
        return ["multi", _mapping({key: value.getlist(key) for key in value})]
    if isinstance(value, Mapping):
        return _mapping(value)
    if isinstance(value, list | tuple):
        return ["l", *map(_encode, value)]
    if isinstance(value, set | frozenset):
        return ["set", *sorted(map(_encode, value), key=_dumps)]
    if isinstance(value, datetime):
        offset = value.utcoffset()
        if offset is None:
            return ["dt", value.isoformat()]
        # Aware: the instant, so equal datetimes in other zones encode alike (and never overflow).
        since = value.replace(tzinfo=None) - _DAY_ONE - offset
        return ["instant", since.days, since.seconds, since.microseconds]
    if isinstance(value, date | time):
        return ["date" if isinstance(value, date) else "time", value.isoformat()]
    if isinstance(value, timedelta):
        return ["td", value.days, value.seconds, value.microseconds]
    if isinstance(value, UUID):
        return ["uuid", value.hex]
    if isinstance(value, bytes | bytearray | memoryview):
        return ["b", hashlib.sha256(value).hexdigest()]
    if isinstance(value, UploadedFile):
        return ["file", value.name, value.content_type, _file_digest(value)]
    if is_dataclass(value) and not isinstance(value, type):
        state = {field.name: getattr(value, field.name) for field in fields(value) if field.compare}
        return ["dc", _type_name(value), _mapping(state)]
    raise TypeError(
        f"cannot fingerprint a {type(value).__qualname__} by value: pass its JSON form "
        "(a dict of its fields, say), or a dataclass"
    )


def _mapping(value: Mapping[Any, Any]) -> Any:
    encoded: dict[str, Any] = {}
    for key, item in value.items():
        if type(key) is not str:
            return _any_keys(value)
        encoded[key] = _encode(item)
    return encoded


def _any_keys(value: Mapping[Any, Any]) -> Any:
    pairs = [(_encode(key), _encode(item)) for key, item in value.items()]
    if all(type(key) is str for key, _ in pairs):  # str subclasses: the same as str keys
        return dict(pairs)
    return ["m", *chain.from_iterable(sorted(pairs, key=_dumps))]


def _type_name(value: object) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def _file_digest(upload: UploadedFile[Any]) -> str:
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    return digest.hexdigest()
