"""Alerts: per-organization channels (where messages go) and rules (when to send them).

A rule opens an `Incident` when its condition starts to hold and closes it when it clears; both, and
what happens while it is open, are recorded as `Event`s. Events become `Message`s per channel at most
once per rule per `MESSAGE_INTERVAL` (several events in one message: a digest), and a loop sends them
(alerts.sending). Nothing here calls the network.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization
from providers.crypto import EncryptedJSONField
from providers.models import Provider

MESSAGE_INTERVAL = timedelta(minutes=5)
EMAILS_LENGTH = 1000


class Channel(models.Model):
    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        SLACK = "slack", "Slack (incoming webhook)"
        DISCORD = "discord", "Discord (incoming webhook)"
        WEBHOOK = "webhook", "Signed webhook (an endpoint of Settings → Webhooks)"

    code = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    organization = models.ForeignKey(Organization, models.CASCADE, related_name="alert_channels")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # Email: the addresses, comma-separated (not secret).
    emails = models.CharField(max_length=EMAILS_LENGTH, blank=True)
    # Slack/Discord: {"url": …}. An incoming-webhook URL lets anyone post to the channel, so it is
    # encrypted at rest and never shown back whole.
    secret = EncryptedJSONField()
    endpoint = models.ForeignKey(
        "webhooks.WebhookEndpoint", models.CASCADE, null=True, blank=True, related_name="alert_channels"
    )
    created = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="alerts_channel_unique_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def url(self) -> str:
        return str(self.secret.get("url", ""))

    @property
    def target(self) -> str:
        """Where it sends, safe to show: addresses, or a webhook URL's host and last characters."""
        if self.kind == Channel.Kind.EMAIL:
            return self.emails
        if self.kind == Channel.Kind.WEBHOOK:
            return self.endpoint.url if self.endpoint else "—"
        url = self.url
        host = url.split("/")[2] if url.count("/") >= 2 else ""
        return f"{host}/…{url[-4:]}" if url else "(unreadable: enter the URL again)"

    @property
    def addresses(self) -> list[str]:
        return [a.strip() for a in self.emails.split(",") if a.strip()]


class Rule(models.Model):
    class Kind(models.TextChoices):
        RUN_FAILED = "run_failed", "A run failed"
        RUN_TIMED_OUT_OR_LOST = "run_timed_out_or_lost", "A run timed out or was lost"
        CREDENTIAL_FAILING = "credential_failing", "A provider's credential has been failing for N minutes"
        SUCCESS_RATE = "success_rate", "Success rate below X% over the last N runs"

    code = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    organization = models.ForeignKey(Organization, models.CASCADE, related_name="alert_rules")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=24, choices=Kind.choices)
    # Optional scope: only these providers / workflow fingerprints (empty: all).
    providers = models.ManyToManyField(Provider, blank=True, related_name="+")
    workflows = models.JSONField(default=list, blank=True)
    minutes = models.PositiveIntegerField(default=15, help_text="credential_failing: failing for this long.")
    threshold = models.FloatField(default=80.0, help_text="success_rate: alert below this percentage.")
    window = models.PositiveIntegerField(default=20, help_text="success_rate: over this many finished runs.")
    channels = models.ManyToManyField(Channel, related_name="rules")
    muted_until = models.DateTimeField(null=True, blank=True)
    last_sent = models.DateTimeField(null=True, blank=True, editable=False)
    created = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    def is_muted(self, now: datetime | None = None) -> bool:
        return self.muted_until is not None and self.muted_until > (now or timezone.now())

    @property
    def summary(self) -> str:
        if self.kind == Rule.Kind.CREDENTIAL_FAILING:
            return f"a credential failing for {self.minutes} min"
        if self.kind == Rule.Kind.SUCCESS_RATE:
            return f"success rate below {self.threshold:g}% over the last {self.window} runs"
        return self.get_kind_display().lower()


class Incident(models.Model):
    """A period during which a rule's condition held, for one scope `key` (a provider, workflow or
    credential, or "" for the whole rule)."""

    rule = models.ForeignKey(Rule, models.CASCADE, related_name="incidents")
    key = models.CharField(max_length=100, blank=True)
    title = models.CharField(max_length=300)
    opened = models.DateTimeField(default=timezone.now)
    closed = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened", "-id"]
        constraints = [
            # The "once per incident" of a rule: at most one open incident per scope.
            models.UniqueConstraint(fields=["rule", "key"], condition=Q(closed=None), name="alerts_incident_one_open")
        ]

    def __str__(self) -> str:
        return self.title


class Event(models.Model):
    class Kind(models.TextChoices):
        FIRED = "fired", "Fired"
        UPDATE = "update", "Again while open"
        RECOVERED = "recovered", "Recovered"

    rule = models.ForeignKey(Rule, models.CASCADE, related_name="events")
    incident = models.ForeignKey(Incident, models.CASCADE, null=True, related_name="events")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    text = models.CharField(max_length=500)
    run = models.ForeignKey("runs.Run", models.SET_NULL, null=True, blank=True, related_name="+", db_index=False)
    created = models.DateTimeField(default=timezone.now)
    # When it went into a message (or was dropped because the rule was muted).
    notified = models.DateTimeField(null=True, blank=True)
    muted = models.BooleanField(default=False)

    class Meta:
        ordering = ["created", "id"]
        indexes = [
            # Used by alerts.messages.compose_due: events not yet in a message.
            models.Index(fields=["rule", "created"], name="alerts_event_pending", condition=Q(notified=None))
        ]

    def __str__(self) -> str:
        return self.text


class Message(models.Model):
    """One message to one channel (the outbox alerts.sending delivers)."""

    channel = models.ForeignKey(Channel, models.CASCADE, related_name="messages")
    rule = models.ForeignKey(Rule, models.SET_NULL, null=True, blank=True, related_name="messages")
    subject = models.CharField(max_length=300)
    text = models.TextField()
    link = models.CharField(max_length=500, blank=True)
    recovered = models.BooleanField(default=False)
    is_test = models.BooleanField(default=False, help_text="Sent by a rule's “send a test message”.")
    created = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    sent = models.DateTimeField(null=True, blank=True)
    failed = models.DateTimeField(null=True, blank=True, help_text="Gave up after the last retry.")
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [
            # Used by alerts.sending.due_messages.
            models.Index(fields=["next_attempt_at"], name="alerts_message_due", condition=Q(sent=None, failed=None))
        ]

    def __str__(self) -> str:
        return self.subject
