"""Creating channels and rules from what a page form or an API client sent: one set of checks for both.
Everything is scoped to the organization; a bad value raises ConfigError naming its field."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone
from yarl import URL

from accounts.models import Organization
from alerts.models import EMAILS_LENGTH, Channel, Event, Incident, Rule
from providers.models import Provider
from runs.queries import provider_by_code_or_name
from webhooks.models import WebhookEndpoint

MAX_EMAILS = 20
# Providers, workflows or channels one rule names: each is looked up, so a list is capped.
MAX_SCOPE = 100
# The longest a rule can be muted for a number of minutes (a year); the page also offers "forever".
MAX_MUTE_MINUTES = 365 * 24 * 60
NUMBERS = (
    # field, default, lowest, highest
    ("minutes", 15, 1, 7 * 24 * 60),
    ("threshold", 80, 0, 100),
    ("window", 20, 1, 1000),
)
FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")


class ConfigError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _clean_text(value: Any, field: str, limit: int, *, required: bool = True) -> str:
    """`value` as text without NUL characters or surrounding space, checked for presence and length.
    Other control characters are refused: a name goes into email subjects, where a line break is a new
    header (Django refuses to send it), and into chat messages and terminals."""
    text = str(value or "").replace("\x00", "").strip()
    if required and not text:
        raise ConfigError(field, f"{field} is required.")
    if len(text) > limit:
        raise ConfigError(field, f"{field} must be at most {limit} characters.")
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise ConfigError(field, f"{field} must be one line of text, without control characters.")
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
    joined = ", ".join(addresses)
    if len(joined) > EMAILS_LENGTH:
        raise ConfigError("emails", f"The addresses are too long together (at most {EMAILS_LENGTH:,} characters).")
    return joined


def _webhook_url(value: Any) -> str:
    """An incoming-webhook URL: https (plain http only for a host allowed in the alert allow-list)."""
    text = _clean_text(value, "url", 500)
    try:
        url = URL(text)
    except ValueError:
        raise ConfigError("url", "Not a URL.") from None
    allowed = {h.split(":")[0] for h in settings.COMFYTRACK_ALERT_ALLOW_PRIVATE_HOSTS}
    if url.scheme != "https" and not (url.scheme == "http" and url.host in allowed):
        raise ConfigError("url", "The webhook URL must start with https://.")
    if not url.host:
        raise ConfigError("url", "The webhook URL has no host.")
    return text


def _name_and_kind(data: dict[str, Any], kinds: list[str]) -> tuple[str, str]:
    name = _clean_text(data.get("name"), "name", 100)
    kind = str(data.get("kind") or "")
    if kind not in kinds:
        raise ConfigError("kind", f"kind must be one of {', '.join(kinds)}.")
    return name, kind


def create_channel(organization: Organization, data: dict[str, Any]) -> Channel:
    name, kind = _name_and_kind(data, Channel.Kind.values)
    channel = Channel(organization=organization, name=name, kind=kind)
    _set_target(channel, data, creating=True)
    return _save_channel(channel)


def update_channel(channel: Channel, data: dict[str, Any]) -> Channel:
    """Change the fields `data` has (a form sends them all, an API PATCH only some). The kind stays: a
    channel of another kind is a new channel. A blank `url` keeps the stored one (it is never shown back)."""
    if "kind" in data and data["kind"] != channel.kind:
        raise ConfigError("kind", "A channel's kind cannot change: add a new channel of that kind.")
    if "name" in data:
        channel.name = _clean_text(data["name"], "name", 100)
    _set_target(channel, data, creating=False)
    return _save_channel(channel)


def _set_target(channel: Channel, data: dict[str, Any], *, creating: bool) -> None:
    if channel.kind == Channel.Kind.EMAIL:
        if creating or "emails" in data:
            channel.emails = _emails(data.get("emails"))
    elif channel.kind == Channel.Kind.WEBHOOK:
        if creating or "endpoint" in data:
            channel.endpoint = _endpoint(channel.organization, data.get("endpoint"))
    elif creating or str(data.get("url") or "").strip():
        channel.secret = {"url": _webhook_url(data.get("url"))}


def _save_channel(channel: Channel) -> Channel:
    try:
        with transaction.atomic():
            channel.save()
    except IntegrityError:
        raise ConfigError("name", f"There is already a channel named {channel.name!r}.") from None
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


def _providers(organization: Organization, values: list[str]) -> list[Provider]:
    if len(values) > MAX_SCOPE:
        raise ConfigError("providers", f"At most {MAX_SCOPE} providers.")
    scoped = Provider.objects.filter(organization=organization)
    found = []
    for value in values:
        provider = provider_by_code_or_name(scoped, value[:200])
        if provider is None:
            raise ConfigError("providers", f"No provider {value[:80]!r} in this organization.")
        found.append(provider)
    return found


def _channels(organization: Organization, values: list[str]) -> list[Channel]:
    if len(values) > MAX_SCOPE:
        raise ConfigError("channels", f"At most {MAX_SCOPE} channels.")
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
    rule = Rule(organization=organization, name=name, kind=kind)
    return _save_rule(rule, data, creating=True)


def update_rule(rule: Rule, data: dict[str, Any]) -> Rule:
    """Change the fields `data` has (a form sends them all, an API PATCH only some). The kind stays: its
    open incidents are keyed by what that kind watches. Open incidents of a scope the rule no longer watches
    are closed (recorded, not sent): nothing would ever clear them."""
    if "kind" in data and data["kind"] != rule.kind:
        raise ConfigError("kind", "A rule's kind cannot change: create a new rule of that kind.")
    if "name" in data:
        rule.name = _clean_text(data["name"], "name", 100)
    return _save_rule(rule, data, creating=False)


def _save_rule(rule: Rule, data: dict[str, Any], *, creating: bool) -> Rule:
    organization = rule.organization
    workflows = providers = channels = None
    if creating or "workflows" in data:
        workflows = [w.lower() for w in _list(data.get("workflows"))]
        if len(workflows) > MAX_SCOPE:
            raise ConfigError("workflows", f"At most {MAX_SCOPE} workflows.")
        if bad := [w for w in workflows if not FINGERPRINT.match(w)]:
            raise ConfigError("workflows", f"{bad[0][:40]!r} is not a workflow fingerprint (16 hex digits).")
        rule.workflows = list(dict.fromkeys(workflows))
    if creating or "providers" in data:
        providers = _providers(organization, _list(data.get("providers")))
    if creating or "channels" in data:
        channels = _channels(organization, _list(data.get("channels")))
    for field, default, low, high in NUMBERS:
        if creating or field in data:
            number = _number(data.get(field), field, default, low, high)
            setattr(rule, field, number if field == "threshold" else int(number))
    with transaction.atomic():
        rule.save()
        if providers is not None:
            rule.providers.set(providers)
        if channels is not None:
            rule.channels.set(channels)
        if not creating:
            _close_unwatched(rule)
    return rule


def _close_unwatched(rule: Rule) -> None:
    """Close the open incidents of providers or workflows the edited rule no longer watches (run rules:
    no run of theirs reaches the rule any more, so nothing else would close them)."""
    if rule.kind == Rule.Kind.CREDENTIAL_FAILING:
        return  # re-checked against the rule's providers on every pass
    provider_keys = {f"provider:{pk}" for pk in rule.providers.values_list("pk", flat=True)}
    # A success-rate rule with workflows keeps its incidents per workflow, not per provider.
    by_workflow = rule.kind == Rule.Kind.SUCCESS_RATE and bool(rule.workflows)
    now = timezone.now()
    for incident in rule.incidents.filter(closed=None):
        if incident.key.startswith("workflow:"):
            watched = incident.key.removeprefix("workflow:") in rule.workflows
        else:
            watched = not by_workflow and (not provider_keys or incident.key in provider_keys)
        if not watched:
            Incident.objects.filter(pk=incident.pk).update(closed=now)
            Event.objects.create(
                rule=rule,
                incident=incident,
                kind=Event.Kind.RECOVERED,
                text=f"No longer watched (the rule was edited): {incident.title}"[:500],
                created=now,
                notified=now,
            )
