"""Providers (one configured hosting account of a kind) and their encrypted credentials."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from accounts.models import Organization
from providers.clients import KIND_LABELS, client_class
from providers.crypto import EncryptedJSONField, SecretUnreadable, UnreadableSecret

if TYPE_CHECKING:
    from providers.clients.base import ProviderClient, SecretModel


_NO_TOKEN = "0" * 64


def hash_webhook_token(token: str) -> str:
    # Tokens are 256 random bits, so a plain SHA-256 is enough (no salt or stretching needed).
    return hashlib.sha256(str(token).encode("utf-8", "surrogatepass")).hexdigest()


class Provider(models.Model):
    code = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    organization = models.ForeignKey(Organization, models.CASCADE, related_name="providers")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=list(KIND_LABELS.items()))
    base_url = models.URLField(
        max_length=500,
        blank=True,
        help_text="The provider's documented API base, path included. Blank uses the kind's public endpoint.",
    )
    config = models.JSONField(
        default=dict,
        blank=True,
        help_text='Kind-specific options, e.g. {"deployment_id": "…"} (ComfyDeploy) or {"api": "v2"} (Comfy Cloud).',
    )
    is_active = models.BooleanField(default=True)
    created = models.DateTimeField(default=timezone.now, editable=False)
    # SHA-256 of the inbound webhook token (ComfyDeploy); the token itself is shown once and never stored.
    webhook_token_hash = models.CharField(max_length=64, blank=True, editable=False)

    class Meta:
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="providers_provider_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def kind_label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)

    @property
    def client_class(self) -> type[ProviderClient]:
        return client_class(self.kind)

    @property
    def effective_base_url(self) -> str:
        return self.base_url or self.client_class.default_base_url or ""

    def clean(self) -> None:
        if self.kind in KIND_LABELS and not self.effective_base_url:
            raise ValidationError({"base_url": f"{self.kind_label} has no public endpoint: enter its base URL."})
        if not isinstance(self.config, dict):
            raise ValidationError({"config": "Must be a JSON object."})

    def issue_webhook_token(self) -> str:
        """A new inbound webhook token (replacing any previous one). Returned once; only its hash is kept."""
        token = secrets.token_urlsafe(32)
        self.webhook_token_hash = hash_webhook_token(token)
        Provider.objects.filter(pk=self.pk).update(webhook_token_hash=self.webhook_token_hash)
        return token

    def check_webhook_token(self, token: str) -> bool:
        """Constant-time comparison; False when no token was ever issued."""
        expected = self.webhook_token_hash or _NO_TOKEN
        return hmac.compare_digest(hash_webhook_token(token), expected) and bool(self.webhook_token_hash)

    def client(self, credential: Credential | None = None, **kwargs: Any) -> ProviderClient:
        """A client for this provider, authenticated with `credential` (or the first active one)."""
        credential = credential or self.credentials.filter(is_active=True).first()
        secret = credential.plain_secret() if credential else {}
        return self.client_class(self.effective_base_url, secret, self.config, **kwargs)


# Seconds between two probes of a credential whose calls keep failing transiently (runs.breaker).
MAX_PROBE_INTERVAL = 8


class Credential(models.Model):
    code = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    provider = models.ForeignKey(Provider, models.CASCADE, related_name="credentials")
    name = models.CharField(max_length=100, default="default")
    # Encrypted at rest; never rendered back (the admin shows `hint` only).
    secret = EncryptedJSONField()
    is_active = models.BooleanField(default=True)
    created = models.DateTimeField(default=timezone.now, editable=False)
    last_ok = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    # The latest failed call (its message is last_error): health is the latest outcome, this or last_ok.
    last_failure = models.DateTimeField(null=True, blank=True, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    # Circuit breaker / Retry-After: the sync engine leaves this credential alone until then.
    blocked_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["provider", "name"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "name"], name="providers_credential_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} / {self.name}"

    @property
    def secret_model(self) -> type[SecretModel]:
        return self.provider.client_class.Secret

    @property
    def conf(self) -> SecretModel:
        """The secret as the kind's pydantic model (raises SecretUnreadable or ValidationError)."""
        return self.secret_model.model_validate(self.plain_secret())

    def plain_secret(self) -> dict[str, Any]:
        if isinstance(self.secret, UnreadableSecret):
            raise SecretUnreadable(
                f"Credential {self.provider.name}/{self.name}: the stored secret cannot be decrypted."
            )
        return dict(self.secret)

    @property
    def hint(self) -> str:
        """Safe to show: e.g. "…a1b2"."""
        if isinstance(self.secret, UnreadableSecret):
            return "(unreadable: enter it again)"
        try:
            return self.conf.hint()
        except Exception:
            return "(invalid: enter it again)"

    @property
    def is_failing(self) -> bool:
        return self.failing_since is not None

    @property
    def latest_outcome(self) -> str:
        """ "ok", "failing" or "unknown": what the latest call with this credential (a sweep's, a Sync
        now, a Test connection) came to."""
        if self.last_failure and (self.last_ok is None or self.last_failure > self.last_ok):
            return "failing"
        return "ok" if self.last_ok else "unknown"

    def mark_ok(self, now=None) -> None:
        now = now or timezone.now()
        Credential.objects.filter(pk=self.pk).update(
            last_ok=now, failing_since=None, consecutive_failures=0, blocked_until=None
        )
        self.last_ok, self.failing_since, self.consecutive_failures, self.blocked_until = now, None, 0, None

    def mark_failed(self, error: str, *, permanent: bool = False, retry_after: float | None = None, now=None) -> None:
        """Record a failure and open the credential's circuit breaker: its runs wait until `blocked_until`,
        then one probe decides for all of them (runs.breaker). Refused credentials (401/403) wait an
        hour; transient failures 1, 2, 4, 8 s (never sooner than the provider's Retry-After), so a
        provider that comes back is seen within seconds while a dead one gets one request every 8 s."""
        now = now or timezone.now()
        failures = self.consecutive_failures + 1
        if permanent:
            block = timedelta(hours=1)
        else:
            block = timedelta(seconds=max(min(2 ** (failures - 1), MAX_PROBE_INTERVAL), retry_after or 0))
        self.consecutive_failures = failures
        self.last_error = error[:2000]
        self.failing_since = self.failing_since or now
        self.last_failure = now
        self.blocked_until = now + block
        Credential.objects.filter(pk=self.pk).update(
            consecutive_failures=failures,
            last_error=self.last_error,
            failing_since=self.failing_since,
            last_failure=now,
            blocked_until=self.blocked_until,
        )

    def set_secret(self, values: dict[str, Any]) -> None:
        """Validate against the kind's schema and store (encrypted on save)."""
        self.secret = self.secret_model.model_validate(values).model_dump(exclude_none=True)
