"""Delivering alert messages: email through Django's email backend, Slack and Discord incoming webhooks
over the SSRF-guarded HTTP client (comfytrack.safe_http), signed webhooks through the webhooks outbox.

1. claim: due messages get a short lease (next_attempt_at moves ahead; comfytrack.leases);
2. send: outside any transaction;
3. record: sent, or a retry later with back-off, or failed after the last attempt.
"""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from alerts.models import Channel, Message, Rule
from comfytrack import safe_http
from comfytrack.leases import Lease
from comfytrack.net import backoff
from comfytrack.safe_http import HostGuard, guarded_session
from webhooks.emit import message_id
from webhooks.models import WebhookDelivery, mask_urls

logger = logging.getLogger("comfytrack.alerts")

# After a failed send: 1 min, then four times longer each time up to 1 h (1, 4, 16, 60 min, each up to
# 10 % sooner), never sooner than the service's Retry-After; five attempts, then give up.
MAX_ATTEMPTS = 5


def retry_delay(attempts: int, retry_after: float | None = None) -> timedelta | None:
    """After `attempts` failed sends: the wait before the next one, or None to give up."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return backoff(attempts - 1, base=60.0, factor=4.0, cap=3600.0, spread=0.1, not_before=retry_after or 0.0)


# A claimed message is due again two minutes later unless its send is recorded first (a worker that died).
LEASE = Lease(Message, "next_attempt_at", timedelta(minutes=2))
BATCH = 100
TIMEOUT = 10.0
# Of a refusing answer's body, this many characters go into the error.
EXCERPT_CHARS = 200
SLACK_GREEN, SLACK_RED = "#2f9e44", "#e03131"


@dataclass
class Outcome:
    message_pk: int
    error: str | None = None
    retry_after: float | None = None  # seconds the service asked us to wait (429/503 Retry-After)


def claim_due(now: datetime, limit: int = BATCH, only: list[int] | None = None) -> list[Message]:
    due = Message.objects.filter(sent=None, failed=None, next_attempt_at__lte=now)
    if only is not None:
        due = due.filter(pk__in=only)
    return LEASE.claim(due.order_by("next_attempt_at", "id"), limit, now=now)


# -- formats ---------------------------------------------------------------------------------------


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(message: Message) -> dict:
    body = f"*{_slack_escape(message.subject)}*\n{_slack_escape(message.text)}"
    if message.link.startswith(("https://", "http://")):
        body += f"\n<{message.link}|Open in comfytrack>"
    return {
        "text": message.subject,
        "attachments": [
            {
                "color": SLACK_GREEN if message.recovered else SLACK_RED,
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": body[:2900]}}],
            }
        ],
    }


def discord_payload(message: Message) -> dict:
    embed = {
        "title": message.subject[:256],
        "description": message.text[:4000],
        "color": 0x2F9E44 if message.recovered else 0xE03131,
    }
    if message.link.startswith(("https://", "http://")):
        embed["url"] = message.link
    # Provider error texts end up in messages: never let one ping @everyone.
    return {"username": "comfytrack", "embeds": [embed], "allowed_mentions": {"parse": []}}


# -- sending ---------------------------------------------------------------------------------------


def send_email(message: Message) -> str | None:
    addresses = message.channel.addresses
    if not addresses:
        return "The channel has no email address."
    text = f"{message.text}\n\n{message.link}" if message.link else message.text
    try:
        send_mail(message.subject, text, settings.DEFAULT_FROM_EMAIL, addresses, fail_silently=False)
    except (smtplib.SMTPException, OSError) as exc:
        return f"The mail server refused or could not be reached: {exc.__class__.__name__}: {str(exc)[:200]}"
    except ValueError:  # Django's refusal of a line break in a header: a rule name stored before names were checked
        return "The subject has a line break, which email cannot carry: rename the rule."
    return None


def send_to_webhook_endpoint(message: Message) -> str | None:
    endpoint = message.channel.endpoint
    if endpoint is None or not endpoint.is_active:
        return "The channel's webhook endpoint is gone or disabled."
    event_type = webhook_event_type(message)
    payload = {
        "type": event_type,
        "rule": {"id": str(message.rule.code), "name": message.rule.name} if message.rule else None,
        "subject": message.subject,
        "text": message.text,
        "link": message.link,
        "created": message.created.isoformat(),
    }
    # Signed and retried by the webhooks app's own delivery loop, like every other webhook.
    WebhookDelivery.objects.create(endpoint=endpoint, event_id=message_id(), event_type=event_type, payload=payload)
    return None


def webhook_event_type(message: Message) -> str:
    if message.is_test:
        return "alert.test"
    return "alert.recovered" if message.recovered else "alert.fired"


def guard() -> HostGuard:
    return HostGuard.for_base_url(
        None,
        settings.COMFYTRACK_ALERT_ALLOW_PRIVATE_HOSTS,
        purpose="send alerts to",
        setting="COMFYTRACK_ALERT_ALLOW_PRIVATE_HOSTS",
    )


async def post_all(jobs: list[tuple[int, str, dict]], timeout: float = TIMEOUT) -> list[Outcome]:
    """POST each (message pk, url, JSON body); one Outcome each."""
    host_guard = guard()
    async with guarded_session(host_guard, timeout=timeout, max_connections=8) as client:
        return await asyncio.gather(*(_post(client, host_guard, job, timeout) for job in jobs))


async def _post(
    client: aiohttp.ClientSession, host_guard: HostGuard, job: tuple[int, str, dict], timeout: float
) -> Outcome:
    pk, url, body = job
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    sent = await safe_http.post(
        client, host_guard, url, content, headers={"Content-Type": "application/json"}, timeout=timeout
    )
    if sent.ok:
        return Outcome(pk)
    # A refusing answer's first words are kept with the error: a chat service says why there. The URL is
    # cut to its host: a Slack or Discord incoming-webhook URL's path is its credential, and the error is
    # logged and shown on the alerts pages.
    error = f"{sent.error} {sent.excerpt[:EXCERPT_CHARS]}".strip() if sent.status_code else sent.error
    error = mask_urls(error)
    return Outcome(pk, error, sent.retry_after)


def send(messages: list[Message]) -> list[Outcome]:
    """Send each message by its channel's kind (network calls, no transaction)."""
    outcomes: list[Outcome] = []
    posts = []
    for message in messages:
        kind = message.channel.kind
        if kind == Channel.Kind.EMAIL:
            outcomes.append(Outcome(message.pk, send_email(message)))
        elif kind == Channel.Kind.WEBHOOK:
            outcomes.append(Outcome(message.pk, send_to_webhook_endpoint(message)))
        elif not message.channel.url:
            error = "The channel's webhook URL cannot be read (was the encryption key removed?)."
            outcomes.append(Outcome(message.pk, error))
        else:
            payload = slack_payload(message) if kind == Channel.Kind.SLACK else discord_payload(message)
            posts.append((message.pk, message.channel.url, payload))
    if posts:
        outcomes += asyncio.run(post_all(posts))
    return outcomes


def record(outcomes: list[Outcome], now: datetime) -> tuple[int, int]:
    sent = failed = 0
    for outcome in outcomes:
        message = Message.objects.get(pk=outcome.message_pk)
        message.attempts += 1
        if outcome.error is None:
            message.sent, message.last_error = now, ""
            sent += 1
        else:
            message.last_error = outcome.error[:1000]
            if (delay := retry_delay(message.attempts, outcome.retry_after)) is None:
                message.failed = now
            else:
                message.next_attempt_at = now + delay
            failed += 1
            logger.warning("alert message %s to %s failed: %s", message.pk, message.channel_id, outcome.error)
        message.save(update_fields=["attempts", "sent", "last_error", "failed", "next_attempt_at"])
    return sent, failed


def deliver_due(now: datetime | None = None, only: list[int] | None = None) -> tuple[int, int]:
    """Send the due messages (or only the given ones); returns (sent, failed attempts)."""
    now = now or timezone.now()
    messages = claim_due(now, only=only)
    if not messages:
        return 0, 0
    for message in messages:
        message.channel  # noqa: B018 - loaded before the network part
    return record(send(messages), timezone.now())


def send_test(rule: Rule) -> list[tuple[Channel, str | None]]:
    """Send a test message to each of the rule's channels now; returns (channel, error or None) each."""
    text = f"A test of the alert rule {rule.name!r} ({rule.summary}). If you can read this, the channel works."
    link = f"{settings.COMFYTRACK_PUBLIC_URL}/settings/alerts/rules/{rule.code}/"
    messages = [
        Message.objects.create(
            channel=c, rule=rule, subject=f"[comfytrack] Test: {rule.name}", text=text, link=link, is_test=True
        )
        for c in rule.channels.all()
    ]
    ids = [m.pk for m in messages]
    deliver_due(only=ids)
    # A test is sent once, now: it is not retried later.
    Message.objects.filter(pk__in=ids, sent=None).update(failed=timezone.now())
    result = {m.pk: m for m in Message.objects.filter(pk__in=[m.pk for m in messages]).select_related("channel")}
    return [(result[m.pk].channel, result[m.pk].last_error or None) for m in messages]
