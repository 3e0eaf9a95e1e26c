"""Request fingerprints: what makes a retry "the same request" as the first attempt."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest
from django.utils.datastructures import MultiValueDict
from rest_framework.request import Request


def request_fingerprint(request: Request) -> str:
    """SHA-256 over the method, the route and the canonical JSON of the parsed body.

    The body is hashed after parsing, so key order, whitespace and escapes do not matter;
    the route is the resolved URL pattern and its arguments, so ``/payments`` and
    ``/payments/`` on one pattern are the same route while ``/orders/1`` and ``/orders/2`` are not.
    """
    document = {
        "method": request.method,
        "route": route_identity(request),
        "query": sorted(request.query_params.lists()),
        "body": canonical(request.data),
    }
    return hash_document(document)


def route_identity(request: Request | HttpRequest) -> list[Any]:
    """The resolved URL pattern and its arguments; the path when the request was not resolved."""
    match = request.resolver_match
    if match is None:
        return [request.path]
    return [match.route or match.view_name, list(match.args), sorted(match.kwargs.items())]


def hash_document(document: object) -> str:
    encoded = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


def canonical(value: Any) -> Any:
    """Turn parsed request data into plain JSON values, keeping every distinction that matters."""
    if isinstance(value, MultiValueDict):
        return {str(key): [canonical(item) for item in value.getlist(key)] for key in value}
    if isinstance(value, Mapping):
        return {str(key): canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(item) for item in value]
    if isinstance(value, UploadedFile):
        return {"file": value.name, "sha256": _file_digest(value)}
    if isinstance(value, float | Decimal):
        return _canonical_number(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    return {"repr": repr(value)}


def _canonical_number(value: float | Decimal) -> int | dict[str, str]:
    # 1.0 and 1 are one JSON number; a non-integer is tagged so it never equals the string "1.5".
    try:
        as_int = int(value)
    except (OverflowError, ValueError):  # inf, nan
        return {"number": str(value)}
    return as_int if value == as_int else {"number": str(value)}


def _file_digest(upload: UploadedFile[Any]) -> str:
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    return digest.hexdigest()


def http_request_fingerprint(request: HttpRequest) -> str:
    """The same idea for a plain Django view, which has no parsed ``request.data``.

    JSON bodies are compared after parsing and form bodies field by field (files by content);
    any other body, or JSON that does not parse, by its bytes. A multipart body is parsed here,
    as Django parses it on first use of ``request.POST``: the view reads it from
    ``request.POST`` and ``request.FILES``, not from ``request.body``.
    """
    document = {
        "method": request.method,
        "route": route_identity(request),
        "query": sorted(request.GET.lists()),
        "body": _http_body(request),
    }
    return hash_document(document)


def _http_body(request: HttpRequest) -> Any:
    content_type = request.content_type or ""
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return {"form": canonical(request.POST), "files": canonical(request.FILES)}
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            return {"json": canonical(json.loads(request.body))}
        except ValueError:
            pass
    return {"sha256": hashlib.sha256(request.body).hexdigest()}
