"""Plain Django function views protected by ``@idempotent`` (no DRF)."""

from __future__ import annotations

import json
from datetime import timedelta

from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.views.decorators.csrf import csrf_exempt

from idempotency.decorators import idempotent
from tests.testapp.models import Widget
from tests.testapp.views import Operation


@csrf_exempt
@idempotent
def create_widget(request):
    """JSON in, JSON out; ``behaviour`` picks how the operation ends."""
    if request.content_type == "application/json":
        data = json.loads(request.body or b"{}")
    else:
        data = request.POST.dict()
    Operation.run()
    widget = Widget.objects.create(name=data.get("name", "w"), size=data.get("size", 1))
    behaviour = data.get("behaviour", "ok")
    if behaviour == "crash":
        raise RuntimeError("operation crashed")
    if behaviour == "not-found":
        raise Http404("no such thing")
    if behaviour == "503":
        return JsonResponse({"detail": "upstream down"}, status=503)
    if behaviour == "stream":
        return StreamingHttpResponse(iter([b"a", b"b"]))
    if behaviour == "template":
        return TemplateResponse(request, "testapp/widget.txt", {"id": widget.pk})
    if behaviour == "invalid":
        return JsonResponse({"detail": "invalid"}, status=400)
    response = JsonResponse({"id": widget.pk, "name": widget.name}, status=201)
    response["Location"] = f"/widgets/{widget.pk}"
    response.set_cookie("session-ish", "secret")
    return response


@csrf_exempt
@idempotent(required=False, methods=["POST", "PUT"], lease=timedelta(seconds=5))
def optional_widget(request):
    Operation.run()
    Widget.objects.create(name="optional")
    return HttpResponse("made", status=201)


@csrf_exempt
@idempotent(scope=lambda request: request.headers.get("X-Tenant", "none"))
def tenant_widget(request):
    Operation.run()
    return JsonResponse({"calls": Operation.calls}, status=201)
