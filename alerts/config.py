"""Creating channels and rules from what a page form or an API client sent: one set of checks for both.
Everything is scoped to the organization; a bad value raises ConfigError naming its field."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from accounts.models import Organization
from alerts.models import Channel, Rule
from providers.models import Provider
from runs.queries import provider_by_code_or_name
from webhooks.models import WebhookEndpoint

MAX_EMAILS = 20
FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")


class ConfigError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _text(value: Any, field: str, limit: int, *, required: bool = True) -> str:
    text = str(value or "").replace("\x00", "").strip()
    if required and not text:
        raise ConfigError(field, f"{field} is required.")
    if len(text) > limit:
        raise ConfigError(field, f"{field} must be at most {limit} characters.")
    return text


def _emails(value: Any) -> str:
    addresses = [a.strip() for a in re.split(r"[,;\s]+", str(value or "")) if a.strip()]
    if not addresses:
        raise ConfigError("emails", "Give at least one email address.")
    if len(addresses) > MAX_EMAILS:
        raise ConfigError("emails", f"At most {MAX_EMAILS} addresses.")
    for address in addresses:
        try:
            validate_email(address)
        except ValidationError:
            raise ConfigError("emails", f"{address[:80]!r} is not an email address.") from None
    return ", ".join(addresses)


def _webhook_url(value: Any) -> str:
    """An incoming-webhook URL: https (plain http only for a host allowed in the alert allow-list)."""
    text = _text(value, "url", 500)
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL:
        raise ConfigError("url", "Not a URL.") from None
    allowed = {h.split(":")[0] for h in settings.COMFYTRACK_ALERT_ALLOW_PRIVATE_HOSTS}
    if url.scheme != "https" and not (url.scheme == "http" and url.host in allowed):
        raise ConfigError("url", "The webhook URL must start with https://.")
    if not url.host:
        raise ConfigError("url", "The webhook URL has no host.")
    return text


def _name_and_kind(data: dict[str, Any], kinds: list[str]) -> tuple[str, str]:
    name = _text(data.get("name"), "name", 100)
    kind = str(data.get("kind") or "")
    if kind not in kinds:
        raise ConfigError("kind", f"kind must be one of {', '.join(kinds)}.")
    return name, kind


def create_channel(organization: Organization, data: dict[str, Any]) -> Channel:
    name, kind = _name_and_kind(data, Channel.Kind.values)
    channel = Channel(organization=organization, name=name, kind=kind)
    if kind == Channel.Kind.EMAIL:
        channel.emails = _emails(data.get("emails"))
    elif kind == Channel.Kind.WEBHOOK:
        channel.endpoint = _endpoint(organization, data.get("endpoint"))
    else:
        channel.secret = {"url": _webhook_url(data.get("url"))}
    try:
        with transaction.atomic():
            channel.save()
    except IntegrityError:
        raise ConfigError("name", f"There is already a channel named {name!r}.") from None
    return channel


def _endpoint(organization: Organization, value: Any) -> WebhookEndpoint:
    try:
        endpoint = WebhookEndpoint.objects.filter(organization=organization, code=str(value or "")).first()
    except ValidationError:
        endpoint = None
    if endpoint is None:
        raise ConfigError("endpoint", "Choose one of this organization's webhook endpoints.")
    return endpoint


def _number(value: Any, field: str, default: float, low: float, high: float) -> float:
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(field, f"{field} must be a number.") from None
    if not low <= number <= high:
        raise ConfigError(field, f"{field} must be from {low:g} to {high:g}.")
    return number


def _list(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    items = value if isinstance(value, list | tuple) else re.split(r"[,\s]+", str(value))
    return [str(item).strip() for item in items if str(item).strip()]


def _providers(organization: Organization, values: Iterable[str]) -> list[Provider]:
    scoped = Provider.objects.filter(organization=organization)
    found = []
    for value in values:
        provider = provider_by_code_or_name(scoped, value[:200])
        if provider is None:
            raise ConfigError("providers", f"No provider {value[:80]!r} in this organization.")
        found.append(provider)
    return found


def _channels(organization: Organization, values: Iterable[str]) -> list[Channel]:
    found = []
    for value in values:
        try:
            channel = Channel.objects.filter(organization=organization, code=value).first()
        except ValidationError:
            channel = None
        if channel is None:
            raise ConfigError("channels", f"No channel {value[:80]!r} in this organization.")
        found.append(channel)
    if not found:
        raise ConfigError("channels", "Choose at least one channel.")
    return found


def create_rule(organization: Organization, data: dict[str, Any]) -> Rule:
    name, kind = _name_and_kind(data, Rule.Kind.values)
    workflows = [w.lower() for w in _list(data.get("workflows"))]
    if bad := [w for w in workflows if not FINGERPRINT.match(w)]:
        raise ConfigError("workflows", f"{bad[0][:40]!r} is not a workflow fingerprint (16 hex digits).")
    providers = _providers(organization, _list(data.get("providers")))
    channels = _channels(organization, _list(data.get("channels")))
    rule = Rule(
        organization=organization,
        name=name,
        kind=kind,
        workflows=workflows,
        minutes=int(_number(data.get("minutes"), "minutes", 15, 1, 7 * 24 * 60)),
        threshold=_number(data.get("threshold"), "threshold", 80, 0, 100),
        window=int(_number(data.get("window"), "window", 20, 1, 1000)),
    )
    with transaction.atomic():
        rule.save()
        rule.providers.set(providers)
        rule.channels.set(channels)
    return rule
