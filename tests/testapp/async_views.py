"""Async function views protected by ``@idempotent`` (tests/test_async.py, tests/faults)."""

from __future__ import annotations

import asyncio
import json

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from idempotency.decorators import idempotent
from tests.testapp.models import Widget


@csrf_exempt
@idempotent
async def create_widget(request):
    """Writes a widget with the async ORM, then ends as ``behaviour`` says."""
    data = json.loads(request.body or b"{}")
    widget = await Widget.objects.acreate(name=data.get("name", "w"))
    await asyncio.sleep(float(data.get("sleep", 0)))
    behaviour = data.get("behaviour", "ok")
    if behaviour == "crash":
        raise RuntimeError("async operation crashed")
    if behaviour == "503":
        return JsonResponse({"detail": "upstream down"}, status=503)
    return JsonResponse({"id": widget.pk, "name": widget.name}, status=201)


@csrf_exempt
@idempotent(required=False)
async def optional_widget(request):
    widget = await Widget.objects.acreate(name="optional")
    return JsonResponse({"id": widget.pk}, status=201)
