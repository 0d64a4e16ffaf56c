"""The inbound ComfyDeploy webhook, served by the JSON API (runs.api) at
/api/v1/hooks/comfydeploy/{provider_id}/{token}. It authenticates by the per-provider token in the path,
not by an API key."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.http import HttpRequest

from providers.models import Provider
from runs.inbound_events import WebhookRejected, apply_comfydeploy_webhook

logger = logging.getLogger("runs.inbound_hooks")

MAX_BODY_BYTES = 1024 * 1024
NOT_FOUND = {"detail": "Not found.", "code": "not_found"}
TOO_LARGE = {"detail": "The body is larger than 1 MB.", "code": "too_large"}


def _bad(message: str) -> dict[str, Any]:
    return {"detail": message, "code": "bad_request"}


def _read_body(request: HttpRequest, declared: str) -> bytes:
    """Up to MAX_BODY_BYTES + 1 bytes of the body, also when it came chunked (no Content-Length).

    Django reads only Content-Length bytes, so a chunked body looks empty to it. A server that decodes
    chunked bodies (gunicorn) says so with `wsgi.input_terminated`: its input can be read to the end."""
    if not declared and request.META.get("wsgi.input_terminated"):
        return request.META["wsgi.input"].read(MAX_BODY_BYTES + 1)
    return request.read(MAX_BODY_BYTES + 1)


def handle_comfydeploy_hook(request: HttpRequest, provider_id, token: str) -> tuple[int, dict[str, Any]]:
    """(status, body): 200 when accepted (also for runs we don't track); 404 for an unknown provider or a
    bad token (the same answer for both); 400 for a body that is not a ComfyDeploy webhook; 413 when too big."""
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        return 413, TOO_LARGE
    provider = Provider.objects.filter(code=provider_id, kind="comfydeploy").first()
    if provider is None:
        Provider().check_webhook_token(token)  # same work as a real check: no timing difference
        return 404, NOT_FOUND
    try:
        body = _read_body(request, declared)
        if len(body) > MAX_BODY_BYTES:
            return 413, TOO_LARGE
        if not provider.check_webhook_token(token):
            return 404, NOT_FOUND
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return 400, _bad("The body is not valid JSON.")
        run = apply_comfydeploy_webhook(provider, token, payload)
    except WebhookRejected as exc:
        return exc.status, NOT_FOUND if exc.status == 404 else _bad(exc.message)
    except Exception:
        # Never a 500: ComfyDeploy retries a 503, and the poller catches up anyway.
        logger.exception("ComfyDeploy webhook for provider %s failed", provider.code)
        return 503, {"detail": "Temporarily unable to process the webhook.", "code": "unavailable"}
    return 200, {"ok": True, "run": str(run.code) if run else None}
