"""Events into messages: at most one message per rule per MESSAGE_INTERVAL; the events that arrive in
between go out together in the next one (a digest). A muted rule's events are recorded, not sent."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from alerts.models import MESSAGE_INTERVAL, Event, Message, Rule

DIGEST_LINES = 20


def absolute(path: str) -> str:
    return f"{settings.COMFYTRACK_PUBLIC_URL}{path}"


def _run_link(event: Event) -> str:
    """A digest line's link to its run, when links can be absolute (a relative one is no use in a chat
    or a mail): the message's own link goes to the rule's page, which lists every event."""
    if event.run is None or not settings.COMFYTRACK_PUBLIC_URL:
        return ""
    return f" — {absolute(f'/runs/{event.run.code}/')}"


def render(rule: Rule, events: list[Event]) -> tuple[str, str, str, bool]:
    """(subject, text, link, recovered) of one message about `events` (oldest first)."""
    recovered = events[-1].kind == Event.Kind.RECOVERED
    rule_link = absolute(f"/settings/alerts/rules/{rule.code}/")
    if len(events) == 1:
        event = events[0]
        label = "Recovered" if recovered else "Alert"
        link = absolute(f"/runs/{event.run.code}/") if event.run else rule_link
        return f"[comfytrack] {label}: {rule.name}", event.text, link, recovered
    lines = [
        f"{e.created:%H:%M} {'✓' if e.kind == Event.Kind.RECOVERED else '•'} {e.text}{_run_link(e)}" for e in events
    ]
    if len(lines) > DIGEST_LINES:
        lines = [*lines[:DIGEST_LINES], f"… and {len(lines) - DIGEST_LINES} more"]
    state = "recovered" if recovered else "still alerting" if rule.incidents.filter(closed=None).exists() else "cleared"
    subject = f"[comfytrack] {rule.name}: {len(events)} events ({state})"
    return subject, "\n".join(lines), rule_link, recovered


def compose_due(now: datetime | None = None) -> int:
    """Messages for every rule with new events whose last message is at least MESSAGE_INTERVAL old."""
    now = now or timezone.now()
    made = 0
    for rule_id in Event.objects.filter(notified=None).values_list("rule_id", flat=True).distinct().order_by():
        made += _compose(rule_id, now)
    return made


def _compose(rule_id: int, now: datetime) -> int:
    with transaction.atomic():
        # Two loops never compose the same events twice: the second skips the locked rule.
        rule = Rule.objects.select_for_update(skip_locked=True).filter(pk=rule_id).first()
        if rule is None:
            return 0
        events = list(rule.events.filter(notified=None).select_related("run").order_by("created", "id"))
        if not events:
            return 0
        if rule.is_muted(now):
            Event.objects.filter(pk__in=[e.pk for e in events]).update(notified=now, muted=True)
            return 0
        if rule.last_sent and now - rule.last_sent < MESSAGE_INTERVAL:
            return 0
        subject, text, link, recovered = render(rule, events)
        messages = [
            Message(channel=channel, rule=rule, subject=subject[:300], text=text, link=link[:500], recovered=recovered)
            for channel in rule.channels.all()
        ]
        Message.objects.bulk_create(messages)
        Event.objects.filter(pk__in=[e.pk for e in events]).update(notified=now)
        Rule.objects.filter(pk=rule.pk).update(last_sent=now)
        return len(messages)
