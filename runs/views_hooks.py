"""The inbound webhook endpoint (plain Django for now; the JSON API will mount the same function)."""

from __future__ import annotations

import json
import logging

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from providers.models import Provider
from runs.webhooks import WebhookRejected, apply_comfydeploy_webhook

logger = logging.getLogger("runs.webhooks")

MAX_BODY_BYTES = 1024 * 1024
NOT_FOUND = {"detail": "Not found."}


@csrf_exempt
@require_POST
def comfydeploy_hook(request: HttpRequest, provider_id, token: str) -> JsonResponse:
    """200 when accepted (also for runs we don't track); 404 for an unknown provider or a bad token
    (the same answer for both); 400 for a body that is not a ComfyDeploy webhook; 413 when too big."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if not declared.isdigit() or int(declared) > MAX_BODY_BYTES:
        return JsonResponse({"detail": "The body is larger than 1 MB."}, status=413)
    provider = Provider.objects.filter(code=provider_id, kind="comfydeploy").first()
    if provider is None:
        Provider().check_webhook_token(token)  # same work as a real check: no timing difference
        return JsonResponse(NOT_FOUND, status=404)
    try:
        body = request.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            return JsonResponse({"detail": "The body is larger than 1 MB."}, status=413)
        if not provider.check_webhook_token(token):
            return JsonResponse(NOT_FOUND, status=404)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return JsonResponse({"detail": "The body is not valid JSON."}, status=400)
        run = apply_comfydeploy_webhook(provider, token, payload)
    except WebhookRejected as exc:
        return JsonResponse(NOT_FOUND if exc.status == 404 else {"detail": exc.message}, status=exc.status)
    except Exception:
        # Never a 500: ComfyDeploy retries a 503, and the poller catches up anyway.
        logger.exception("ComfyDeploy webhook for provider %s failed", provider.code)
        return JsonResponse({"detail": "Temporarily unable to process the webhook."}, status=503)
    return JsonResponse({"ok": True, "run": str(run.code) if run else None})
