"""Request fingerprints: what makes a retry "the same request" as the first attempt."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.core.files.uploadedfile import UploadedFile
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


def route_identity(request: Request) -> list[Any]:
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
