"""Async views and consumers: ``@idempotent`` on ``async def`` views, and ``arun_once``.

The guard's steps run through ``sync_to_async`` in one thread-sensitive context, so the view's
awaited ORM writes and the record's completion share one connection and one transaction.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from idempotency.exceptions import IdempotencyKeyInUse
from idempotency.models import IdempotencyRecord
from idempotency.operations import arun_once
from tests.testapp.models import Widget

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.async_urls")]


def post(body, key="async-1", url="/async/widgets"):
    headers = {} if key is None else {"Idempotency-Key": key}
    client = AsyncClient(raise_request_exception=False)
    return asyncio.run(
        client.post(url, json.dumps(body), content_type="application/json", headers=headers)
    )


def test_an_async_view_runs_once_and_its_retry_is_replayed():
    first = post({"name": "a"})
    replay = post({"name": "a"})

    assert first.status_code == 201
    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.content == first.content
    assert Widget.objects.count() == 1
    assert IdempotencyRecord.objects.get().state == "completed"


@pytest.mark.parametrize("behaviour", ["crash", "503"])
def test_an_async_view_that_fails_rolls_back_its_awaited_writes_and_frees_the_key(behaviour):
    response = post({"name": "a", "behaviour": behaviour})

    assert response.status_code in (500, 503)
    assert not Widget.objects.exists()  # written with acreate(), rolled back with the key
    assert not IdempotencyRecord.objects.exists()


def test_an_async_view_refuses_another_payload_and_a_missing_key():
    post({"name": "a"})
    assert post({"name": "b"}).status_code == 422
    assert post({"name": "a"}, key=None).status_code == 400
    assert Widget.objects.count() == 1


def test_an_optional_key_async_view_runs_unprotected_without_one():
    assert post({}, key=None, url="/async/optional").status_code == 201
    assert not IdempotencyRecord.objects.exists()


def test_arun_once_runs_an_async_consumer_once_and_replays_its_result():
    calls = []

    async def handle():
        calls.append(1)
        widget = await Widget.objects.acreate(name="event")
        return {"widget": widget.pk}

    async def deliver_twice():
        first = await arun_once(handle, scope="events", key="evt-1")
        second = await arun_once(handle, scope="events", key="evt-1")
        return first, second

    first, second = asyncio.run(deliver_twice())
    assert first == second == {"widget": Widget.objects.get().pk}
    assert calls == [1]


def test_arun_once_rolls_back_and_frees_the_key_when_the_consumer_fails():
    async def fail():
        await Widget.objects.acreate(name="lost")
        raise RuntimeError("consumer crashed")

    with pytest.raises(RuntimeError):
        asyncio.run(arun_once(fail, scope="events", key="evt-2"))
    assert not Widget.objects.exists()
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.row_locks
def test_concurrent_async_deliveries_of_one_event_run_it_once():
    """20 deliveries on one event loop, each in its own thread-sensitive context."""
    calls = []

    async def handle():
        calls.append(1)
        await Widget.objects.acreate(name="event")
        await asyncio.sleep(0.3)
        return "done"

    async def deliver():
        try:
            return await arun_once(handle, scope="events", key="evt-3")
        except IdempotencyKeyInUse:
            return "in use"

    async def burst():
        return await asyncio.gather(*(deliver() for _ in range(20)))

    results = asyncio.run(burst())
    assert calls == [1]
    assert Widget.objects.count() == 1
    assert set(results) <= {"done", "in use"} and "done" in results

    async def patient():
        return await arun_once(handle, scope="events", key="evt-4", wait=timedelta(seconds=5))

    async def patient_burst():
        return await asyncio.gather(*(patient() for _ in range(10)))

    assert asyncio.run(patient_burst()) == ["done"] * 10
    assert len(calls) == 2
    assert sync_to_async is not None
