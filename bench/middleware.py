"""Count the SQL a request runs, on every database alias, for the benchmark's query table.

Only requests sent with ``X-Bench-Count: 1`` are counted (Django's debug cursor has a cost, so
timed requests never pay it); their answer carries ``X-Bench-Queries``, a JSON list of one short
label per statement, in order per alias: ``"default: INSERT idempotency_idempotencyrecord"``,
``"default: BEGIN"``, ...
Django logs ``BEGIN``/``COMMIT``/``ROLLBACK`` beside the statements, so they are counted too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from django.db import connections
from django.http import HttpRequest
from django.http.response import HttpResponseBase

COUNT_HEADER = "X-Bench-Count"
RESULT_HEADER = "X-Bench-Queries"

_TABLE = re.compile(r'(?:FROM|INTO|UPDATE)\s+"?([A-Za-z0-9_]+)"?', re.IGNORECASE)
_WRITE = re.compile(r"\b(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)


def label(sql: str) -> str:
    """``'SELECT "a"."b" FROM "payments_customer" ...'`` -> ``'SELECT payments_customer'``.

    A statement with a CTE is named by its first write: ``'WITH INSERT <table>'``.
    """
    words = sql.split(None, 1)
    verb = words[0].upper() if words else ""
    if verb == "WITH":
        write = _WRITE.search(sql)
        table = _TABLE.search(sql[write.start() :] if write else sql)
        inner = write.group(1).upper() if write else "SELECT"
        return f"WITH {inner} {table.group(1)}" if table else f"WITH {inner}"
    if verb in {"SELECT", "INSERT", "UPDATE", "DELETE"}:
        table = _TABLE.search(sql)
        return f"{verb} {table.group(1)}" if table else verb
    if verb == "RELEASE":
        return "RELEASE SAVEPOINT"
    return verb  # BEGIN, COMMIT, ROLLBACK, SAVEPOINT


class QueryCountMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.headers.get(COUNT_HEADER) != "1":
            return self.get_response(request)
        watched = [connections[alias] for alias in connections]
        saved = [connection.force_debug_cursor for connection in watched]
        for connection in watched:
            connection.force_debug_cursor = True
            connection.queries_log.clear()
        try:
            response = self.get_response(request)
        finally:
            for connection, previous in zip(watched, saved, strict=True):
                connection.force_debug_cursor = previous
        labels: list[str] = []
        for connection in watched:
            labels.extend(
                f"{connection.alias}: {label(query['sql'])}" for query in connection.queries_log
            )
            connection.queries_log.clear()
        response[RESULT_HEADER] = json.dumps(labels)
        return response
