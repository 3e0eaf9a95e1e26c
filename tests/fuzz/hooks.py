"""Schemathesis hooks for the demo's fuzz (loaded through ``SCHEMATHESIS_HOOKS``).

- Every request gets an ``Idempotency-Key`` of its own: a generated case repeats keys (``"0"``
  again and again) and a replayed or reused key is an answer about the key, not about the
  request, so a valid generated key is swapped for a UUID. An invalid one (a negative case)
  and a missing one are sent as generated: they test the key checks.
- A schema-valid request may still be refused where the schema cannot say why: a customer or
  product that does not exist, or a ``userId`` that is not the caller's. The
  ``positive_data_acceptance`` check accepts a 400 for that (schemathesis.toml); this check
  makes sure that such a 400 names nothing else.
"""

from __future__ import annotations

import json
import re
import uuid

import schemathesis

KEY_HEADER = "Idempotency-Key"
# idempotency.keys: visible ASCII without the comma, as the schema documents it.
VALID_KEY = re.compile(r"[\x21\x23-\x2b\x2d-\x7e][\x21-\x2b\x2d-\x7e]{0,254}")

# What only the database knows: field -> how the demo words that refusal.
UNKNOWABLE = {
    "customerId": "Unknown customer ",
    "sku": "Unknown product ",
    "userId": "Must be your own user id",
}


@schemathesis.hook
def before_call(context, case, kwargs):
    key = (case.headers or {}).get(KEY_HEADER)
    if isinstance(key, str) and VALID_KEY.fullmatch(key):
        case.headers[KEY_HEADER] = f"fuzz-{uuid.uuid4()}"


@schemathesis.check
def refused_only_for_what_the_schema_cannot_say(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]  # lowercase names, lists
    if not content_type.startswith("application/json"):
        raise AssertionError(f"A schema-valid request was refused: {response.text[:500]}")
    errors = json.loads(response.text)
    unexplained = {
        field: messages
        for field, messages in (errors.items() if isinstance(errors, dict) else [("", errors)])
        if field not in UNKNOWABLE
        or not all(str(message).startswith(UNKNOWABLE[field]) for message in messages)
    }
    if unexplained:
        raise AssertionError(f"A schema-valid request was refused for {unexplained}")
    return True
