"""A retrying HTTP client for idempotent APIs, built on httpx (``django-idempotency[client]``).

One key per logical call, reused across that call's retries, as Stripe's SDKs do::

    from idempotency.contrib.client import IdempotentClient

    with IdempotentClient(base_url="https://payments.internal") as api:
        response = api.post("/payments", json={"amount": 100, "currency": "USD"})
        response.extensions["idempotency_key"]  # the key every attempt of this call sent

It retries connection errors, timeouts and a dropped connection (the response may have been
lost after the server committed: the retry with the same key gets the stored outcome), ``409``
in progress, ``429``, ``502``, ``503`` and ``504``, honouring ``Retry-After`` and otherwise
backing off exponentially with full jitter. It never retries a ``422`` or another 4xx, and
never retries an unsafe request without a key.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Answers that mean "not now, the same request may succeed later".
RETRIED_STATUSES = frozenset({409, 429, 502, 503, 504})


@dataclass(frozen=True)
class AttemptInfo:
    """What ``on_attempt`` receives after each attempt of a call."""

    method: str
    url: str
    key: str | None
    attempt: int
    status: int | None  # None when no answer came (connection error, timeout)
    error: Exception | None
    retry_in: float | None  # seconds until the next attempt; None when this one is the last


class IdempotentClient:
    """An ``httpx.Client`` that sends an ``Idempotency-Key`` with every unsafe call and retries.

    ``max_attempts`` bounds the attempts of one call; ``backoff`` is the first delay (doubled
    each retry, capped at ``max_backoff``, with full jitter); a ``Retry-After`` answer is
    honoured up to ``max_retry_after`` seconds. ``on_attempt`` sees every attempt (the key and
    the attempt number included), and so does the ``idempotency.contrib.client`` logger.
    """

    def __init__(
        self,
        client: httpx.Client | None = None,
        *,
        header: str = "Idempotency-Key",
        max_attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_retry_after: float = 60.0,
        key_factory: Callable[[], str] = lambda: str(uuid.uuid4()),
        on_attempt: Callable[[AttemptInfo], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        **client_options: Any,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1.")
        self.client = client or httpx.Client(**client_options)
        self.header = header
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.key_factory = key_factory
        self.on_attempt = on_attempt
        self.sleep = sleep

    def __enter__(self) -> IdempotentClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    def request(
        self, method: str, url: str, *, idempotency_key: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send one logical call, retried under one key; the last response.

        The key (given, or made by ``key_factory`` for an unsafe method) and the number of
        attempts are in ``response.extensions`` as ``idempotency_key`` and
        ``idempotency_attempts``. Raises the last transport error when no attempt got an answer.
        """
        method = method.upper()
        headers = httpx.Headers(kwargs.pop("headers", None))
        key = idempotency_key or headers.get(self.header)
        if key is None and method not in SAFE_METHODS:
            key = self.key_factory()  # every unsafe call has a key, so every retry is safe
        if key is not None:
            headers[self.header] = key
        request = self.client.build_request(method, url, headers=headers, **kwargs)
        # A body streamed from an iterator or a file is gone once sent: one attempt only, or a
        # retry would send the key with an empty body.
        attempts = self.max_attempts if isinstance(request.stream, httpx.ByteStream) else 1
        for attempt in range(1, attempts + 1):
            last = attempt == attempts
            try:
                response = self.client.send(request)
            except httpx.TransportError as error:
                delay = None if last else self._backoff(attempt)
                self._report(method, url, key, attempt, None, error, delay)
                if delay is None:
                    raise
                self.sleep(delay)
                continue
            delay = None if last else self._retry_delay(response, attempt)
            self._report(method, url, key, attempt, response.status_code, None, delay)
            if delay is None:
                response.extensions["idempotency_key"] = key
                response.extensions["idempotency_attempts"] = attempt
                return response
            response.close()
            self.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)

    def _retry_delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds before retrying this answer; None when it is final."""
        if response.status_code not in RETRIED_STATUSES:
            return None
        if response.status_code == 409 and "retry-after" not in response.headers:
            return None  # a conflict of the application's own, not "in progress"
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return self._backoff(attempt)

    def _backoff(self, attempt: int) -> float:
        # Full jitter: spread retries of many clients over the whole window.
        return random.uniform(0, min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))

    def _report(
        self,
        method: str,
        url: str,
        key: str | None,
        attempt: int,
        status: int | None,
        error: Exception | None,
        retry_in: float | None,
    ) -> None:
        info = AttemptInfo(method, url, key, attempt, status, error, retry_in)
        logger.info(
            "idempotency client: %s %s key=%s attempt=%d status=%s error=%s retry_in=%s",
            method,
            url,
            key,
            attempt,
            status,
            type(error).__name__ if error else None,
            retry_in,
        )
        if self.on_attempt is not None:
            self.on_attempt(info)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delay-seconds or an HTTP-date), None if absent or invalid."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
