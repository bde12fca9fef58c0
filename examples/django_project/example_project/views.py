"""A view that posts a message through the process-wide bot."""

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from watchers_bot.contrib import error_status
from watchers_bot.contrib.django import send as watchers_send


@csrf_exempt  # a JSON API called by other services; use your own auth in real code
@require_POST
def send(request: HttpRequest) -> JsonResponse:
    """``POST /send`` with ``{"room": ..., "text": ...}``: the server's ack as JSON.

    502 refused by the server, 504 delivery unknown, 503 not connected, 400 bad input.
    """
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("room"), str) \
            or not isinstance(data.get("text"), str):
        return JsonResponse({"ok": False, "error": "give a JSON body with 'room' and 'text'"},
                            status=400)
    try:
        ack = watchers_send(data["room"], data["text"], timeout=data.get("timeout"))
    except Exception as exc:  # mapped to 502/503/504/400; others re-raised
        status, body = error_status(exc)
        return JsonResponse(body, status=status)
    return JsonResponse({"ok": True, "ack": ack})
