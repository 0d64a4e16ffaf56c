"""The "Send a test delivery" button: a `webhook.test` message, signed and retried like every other, so a
receiver can be checked without waiting for a run to change."""

from __future__ import annotations

from django.utils import timezone

from comfytrack.api_json import datetime_text
from webhooks.emit import message_id
from webhooks.models import WebhookDelivery, WebhookEndpoint

TEST_EVENT = "webhook.test"


def send_test(endpoint: WebhookEndpoint) -> WebhookDelivery:
    """Queue a test delivery to `endpoint`, due now (a paused endpoint gets it once resumed)."""
    payload = {
        "type": TEST_EVENT,
        "timestamp": datetime_text(timezone.now()),
        "data": {"endpoint": str(endpoint.code), "message": "A test delivery from comfytrack."},
    }
    return WebhookDelivery.objects.create(
        endpoint=endpoint, event_id=message_id(), event_type=TEST_EVENT, payload=payload
    )
