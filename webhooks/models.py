"""Outbound webhooks: endpoints an organization registers, and every delivery attempt's outcome."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization
from comfytrack.net import backoff
from providers.crypto import EncryptedJSONField
from webhooks.signing import new_secret

# Run.status → event type ("pending" is not announced: nothing has happened at the provider yet).
STATUS_EVENTS = {
    "queued": "run.queued",
    "running": "run.started",
    "succeeded": "run.succeeded",
    "failed": "run.failed",
    "cancelled": "run.cancelled",
    "timed_out": "run.timed_out",
    "lost": "run.lost",
}
EVENT_TYPES = (*STATUS_EVENTS.values(), "run.output")
_URL_TAIL = re.compile(r"\b(https?://)(?:[^/@\s'\"]*@)?([^/?#\s'\"]+)[^\s'\"]*")


def mask_urls(text: str) -> str:
    """Every http(s) URL in `text` cut to its scheme and host (`https://hooks.slack.com/…`)."""
    return _URL_TAIL.sub(r"\1\2/…", text)


# After a failed attempt: 30 s, then four times longer each time up to 10 h (each up to 10 % sooner, to
# spread retries that failed together), never sooner than the endpoint's Retry-After. Nine attempts, the
# last 28 to 31 hours after the first (docs/api.md "Delivery"), then give up.
RETRY_BASE, RETRY_FACTOR, RETRY_CAP, RETRY_SPREAD = 30.0, 4.0, 36_000.0, 0.1
MAX_ATTEMPTS = 9


class WebhookEndpoint(models.Model):
    code = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    organization = models.ForeignKey(Organization, models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    # Event types to send; empty means all of them.
    events = models.JSONField(default=list, blank=True)
    # {"key": "whsec_…"}: encrypted at rest, shown once when created.
    secret = EncryptedJSONField()
    is_active = models.BooleanField(default=True)
    created = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey("auth.User", models.SET_NULL, null=True, blank=True, editable=False)

    class Meta:
        ordering = ["created", "id"]
        verbose_name = "webhook endpoint"

    def __str__(self) -> str:
        return self.url

    @property
    def masked_url(self) -> str:
        """The URL as viewers and members see it: scheme and host only. Receivers often carry their own
        secret in the path or query (Slack, Discord, Teams hooks), and credentials may be in the netloc."""
        return mask_urls(self.url)

    @property
    def signing_secret(self) -> str:
        return str(self.secret.get("key", ""))

    def rotate_secret(self) -> str:
        """A new signing secret (returned once; stored encrypted)."""
        plain = new_secret()
        self.secret = {"key": plain}
        if self.pk:
            self.save(update_fields=["secret"])
        return plain

    def wants(self, event_type: str) -> bool:
        return self.is_active and (not self.events or event_type in self.events)


class WebhookDeliveryQuerySet(models.QuerySet):
    def pending(self) -> WebhookDeliveryQuerySet:
        return self.filter(delivered=None, failed=None)

    def due(self, now: datetime) -> WebhookDeliveryQuerySet:
        return self.pending().filter(next_attempt_at__lte=now).filter(Q(locked_until=None) | Q(locked_until__lt=now))


class WebhookDelivery(models.Model):
    """One message to one endpoint, retried on the same row until delivered or given up.

    `event_id` is the Standard Webhooks `webhook-id`: the same on every retry and on a redelivery,
    so receivers can deduplicate."""

    code = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    endpoint = models.ForeignKey(WebhookEndpoint, models.CASCADE, related_name="deliveries")
    event_id = models.CharField(max_length=64)
    event_type = models.CharField(max_length=30)
    payload = models.JSONField()
    created = models.DateTimeField(default=timezone.now, editable=False)
    attempt = models.PositiveIntegerField(default=0, help_text="Attempts made so far.")
    last_attempt = models.DateTimeField(null=True, blank=True)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    locked_until = models.DateTimeField(null=True, blank=True, editable=False)
    delivered = models.DateTimeField(null=True, blank=True)
    failed = models.DateTimeField(null=True, blank=True, help_text="Gave up after the last retry.")

    objects = WebhookDeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            # Used by webhooks.delivery.claim_due: only deliveries still to send are in it.
            models.Index(
                fields=["next_attempt_at"],
                name="webhooks_delivery_due",
                condition=Q(delivered=None, failed=None),
            ),
            models.Index(fields=["endpoint", "-created"], name="webhooks_delivery_log"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint}"

    @property
    def state(self) -> str:
        if self.delivered:
            return "delivered"
        if self.failed:
            return "failed"
        return "retrying" if self.attempt else "pending"

    def retry_delay(self, not_before: float | None = None) -> timedelta | None:
        """After `self.attempt` failed attempts: the wait before the next one (at least `not_before`
        seconds, the endpoint's Retry-After), or None to give up."""
        if self.attempt >= MAX_ATTEMPTS:
            return None
        return backoff(
            self.attempt - 1,
            base=RETRY_BASE,
            factor=RETRY_FACTOR,
            cap=RETRY_CAP,
            spread=RETRY_SPREAD,
            not_before=not_before or 0.0,
        )

    def redeliver(self) -> WebhookDelivery:
        """A fresh delivery of the same message (same webhook-id), due now, with its own attempts."""
        return WebhookDelivery.objects.create(
            endpoint=self.endpoint, event_id=self.event_id, event_type=self.event_type, payload=self.payload
        )
