"""The retrying client against the demo under gunicorn, behind a proxy that loses a response.

The proxy forwards the first payment to the server, lets it commit, and then drops the client's
connection without an answer: what a timeout or a failed load balancer looks like to a client.
The client retries with the same key and ends with exactly one charge and the original response.
"""

from __future__ import annotations

import socket
import threading

import pytest

from idempotency.contrib.client import IdempotentClient
from tests.faults.server import free_port
from tests.faults.test_processes import BODY, counts

pytestmark = [pytest.mark.row_locks, pytest.mark.processes]


class LossyProxy:
    """Forwards each request to ``upstream``; drops the first ``lose`` answers after they came."""

    def __init__(self, upstream_port, lose):
        self.upstream_port = upstream_port
        self.lose = lose
        self.forwarded = 0
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            with client:
                request = _read_request(client)
                with socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
                    upstream.sendall(request)
                    answer = _read_until_closed(upstream)  # the server committed and answered
                self.forwarded += 1
                if self.forwarded <= self.lose:
                    continue  # lost on the way back: the client sees the connection close
                client.sendall(answer)

    def close(self):
        self.listener.close()


def _read_request(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += sock.recv(65536)
    # One request per connection: ask the server to close after answering.
    head = b"\r\n".join(
        line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")
    )
    return head + b"\r\nConnection: close\r\n\r\n" + body


def _read_until_closed(sock):
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_client_whose_first_response_is_lost_pays_once_and_gets_the_original(demo_server, clean):
    proxy = LossyProxy(demo_server.port, lose=1)
    attempts = []
    try:
        with IdempotentClient(
            base_url=f"http://127.0.0.1:{proxy.port}",
            headers={"Authorization": f"Token {demo_server.database.tokens['u1']}"},
            backoff=0.1,
            on_attempt=attempts.append,
            timeout=10,
        ) as api:
            response = api.post("/payments", json=BODY)
    finally:
        proxy.close()

    assert response.status_code == 201
    assert response.headers["Idempotent-Replayed"] == "true"
    assert counts(clean) == (1, 1)
    payment_id = clean.value("SELECT payment_id FROM payments_payment")
    assert response.json()["paymentId"] == payment_id
    assert [info.attempt for info in attempts] == [1, 2]
    assert attempts[0].status is None and attempts[0].error is not None
    assert attempts[0].key == attempts[1].key == response.extensions["idempotency_key"]
    assert proxy.forwarded == 2


def test_without_the_client_a_lost_response_retried_without_a_key_pays_twice(demo_server, clean):
    """The baseline: the same lost response, retried by hand with a new key each time."""
    proxy = LossyProxy(demo_server.port, lose=1)
    headers = {"Authorization": f"Token {demo_server.database.tokens['u1']}"}
    try:
        import httpx

        with httpx.Client(base_url=f"http://127.0.0.1:{proxy.port}", headers=headers) as plain:
            with pytest.raises(httpx.TransportError):
                plain.post("/payments", json=BODY, headers={"Idempotency-Key": "first-try"})
            retry = plain.post("/payments", json=BODY, headers={"Idempotency-Key": "new-try"})
    finally:
        proxy.close()
    assert retry.status_code == 201
    assert counts(clean) == (2, 2)
