"""The floor: the minimal correct idempotency protocol, written by hand for PostgreSQL.

What any correct layer must pay per request, on the library's own record table (same columns,
same indexes, same scope strings), with nothing else: no settings lookups, signals, logging,
generic fingerprinting, header filtering or ORM. A new key costs one autocommitted reservation
(it must be visible to a concurrent duplicate before the operation runs), then one transaction
holding the operation, the rendering of its response and the fenced completion, which commits
the transaction in its own round trip. A completed key costs the reservation, which collides,
and one read of the row: the plain statements the floor is defined by. (The library reserves
through a PL/pgSQL function on PostgreSQL, which reads a taken key's row back in the same round
trip, so its replay can cost the database less than this floor's; one plain statement that does
both costs more than these two: tools/statement_forms.py.)

Left out because they cost nothing on the measured paths (a comparison, an untaken branch):
taking over a dead holder's expired lease, reusing an expired key, waiting for a holder.
Expiry counts from the reservation here (the library counts it from the completion, which
makes the completion write the indexed ``expires_at``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any

from django.db import DataError, connection, transaction
from django.http import HttpResponse
from django.http.response import HttpResponseBase
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

TABLE = "idempotency_idempotencyrecord"
KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# The headers a replay needs beside the body (the demo's payment sets Location).
STORED_HEADERS = ("Content-Type", "Location")
ATTEMPTS = 3
LEASE_LOST = "floor: lease lost"

# Reserve the key; no row back when it is taken (READ then reads the row that holds it).
RESERVE = f"""
INSERT INTO {TABLE} (
    scope, key, fingerprint, method, path, state, response_headers, response_body,
    lease_token, locked_until, created_at, expires_at
)
VALUES (
    %(scope)s, %(key)s, %(fingerprint)s, %(method)s, %(path)s, 'in_progress', '[]', '',
    %(token)s, now() + interval '60 seconds', now(), now() + interval '24 hours'
)
ON CONFLICT (scope, key) DO NOTHING
RETURNING id, true
"""
READ = f"""
SELECT id, false, state, fingerprint, response_status, response_headers, response_body
FROM {TABLE} WHERE scope = %(scope)s AND key = %(key)s
"""
# Fenced: only this reservation's token completes its in-progress row. The same round trip
# commits the operation (one fewer while its row locks are held); a fence that matches no row
# fails in the database instead (the marker's cast to int), so the COMMIT after it never runs.
COMPLETE_AND_COMMIT = f"""
WITH completed AS (
    UPDATE {TABLE} SET state = 'completed', response_status = %s,
        response_headers = %s::jsonb, response_body = %s, completed_at = now(),
        locked_until = NULL
    WHERE id = %s AND lease_token = %s AND state = 'in_progress' RETURNING 1
)
SELECT (SELECT CASE count(*) WHEN 1 THEN '1' ELSE '{LEASE_LOST}' END FROM completed)::int;
COMMIT
"""
# The completion alone, committed by the transaction's own COMMIT after it: one round trip more
# while the operation's row locks are held (tools/round_trip_ab.py measures what that costs).
COMPLETE = f"""
UPDATE {TABLE} SET state = 'completed', response_status = %s, response_headers = %s::jsonb,
    response_body = %s, completed_at = now(), locked_until = NULL
WHERE id = %s AND lease_token = %s AND state = 'in_progress'
"""
RELEASE = f"DELETE FROM {TABLE} WHERE id = %s AND lease_token = %s AND state = 'in_progress'"

Row = tuple[Any, ...]
Operation = Callable[[str, str], HttpResponseBase]


class LeaseLostError(Exception):
    """The reservation's row is no longer this attempt's: its writes must roll back."""


def protect(
    view: APIView, request: Request, operation: Operation, *, commit_in_completion: bool = True
) -> HttpResponseBase:
    """Run ``operation(scope, key)`` once per key; answer retries with its stored response.

    Call it from the view's handler: DRF has authenticated the caller, whose scope it is.
    ``commit_in_completion=False``: the completion, then the transaction's own ``COMMIT``.
    """
    key = request.headers.get(KEY_HEADER)
    if not key or len(key) > 255:
        return problem(400, "Send an Idempotency-Key header of 1-255 characters.")
    scope = f"auth.user:{request.user.pk}"
    fingerprint = hashlib.sha256(request.body).hexdigest()
    token = uuid.uuid4()
    params = {
        "scope": scope,
        "key": key,
        "fingerprint": fingerprint,
        "method": request.method,
        "path": request.path,
        "token": token,
    }
    with connection.cursor() as cursor:
        row = reserve(cursor, params)
    if not row[1]:
        return answer_existing(row, fingerprint)
    record_id = row[0]
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            response = operation(scope, key)
            # Finalized and rendered here, inside the transaction, so its bytes are stored
            # with the operation's writes (DRF types the argument as Response; any response
            # passes).
            response = view.finalize_response(
                request,
                response,  # type: ignore[arg-type]
                *view.args,
                **view.kwargs,
            )
            if isinstance(response, Response):
                response.render()
            assert isinstance(response, HttpResponse)  # the floor's views answer no streams
            headers = [[name, response[name]] for name in STORED_HEADERS if name in response]
            params = [response.status_code, json.dumps(headers), response.content, record_id, token]
            if not commit_in_completion:
                cursor.execute(COMPLETE, params)
                if cursor.rowcount != 1:
                    raise LeaseLostError(key)
                return response  # committed as the atomic block ends
            try:
                cursor.execute(COMPLETE_AND_COMMIT, params)
            except DataError as error:
                # The cast's own message: a context line may quote stored text (the headers).
                if LEASE_LOST in error.__cause__.diag.message_primary:  # type: ignore[union-attr]
                    raise LeaseLostError(key) from error
                raise
    except Exception:
        with connection.cursor() as cursor:
            cursor.execute(RELEASE, [record_id, token])
        raise
    return response


def reserve(cursor: Any, params: dict[str, Any]) -> Row:
    """The new reservation ``(id, True, ...)`` or the key's existing row ``(id, False, ...)``."""
    for _attempt in range(ATTEMPTS):
        cursor.execute(RESERVE, params)
        row = cursor.fetchone()
        if row is None:  # the key is taken: read the row that holds it
            cursor.execute(READ, params)
            row = cursor.fetchone()
        if row is not None:
            return tuple(row)
        # Released between the two statements: the key is free again.
    raise RuntimeError(f"Could not reserve idempotency key {params['key']!r}.")


def answer_existing(row: Row, fingerprint: str) -> HttpResponseBase:
    _id, _new, state, stored_fingerprint, status, headers, body = row
    if stored_fingerprint != fingerprint:
        return problem(422, "This key was used for another request.")
    if state != "completed":
        return problem(409, "A request with this key is in progress.")
    response = HttpResponse(bytes(body), status=status)
    for name, value in json.loads(headers):  # Django's psycopg loads jsonb as text
        response[name] = value
    response[REPLAYED_HEADER] = "true"
    return response


def problem(status: int, detail: str) -> HttpResponse:
    return HttpResponse(
        json.dumps({"status": status, "detail": detail}),
        status=status,
        content_type="application/problem+json",
    )
