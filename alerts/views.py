"""Alert pages under /settings/alerts/: channels and rules (members read; owners and admins add, edit and
delete them), a rule's incidents and messages, "send a test message", mute and unmute."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.contrib import messages
from django.db.models import Count, Exists, OuterRef, Subquery
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.access import Access, org_required
from alerts.config import MAX_MUTE_MINUTES, ConfigError, create_channel, create_rule, update_channel, update_rule
from alerts.models import Channel, Event, Incident, Message, Rule
from alerts.sending import send_test
from providers.models import Provider
from webhooks.models import WebhookEndpoint

MUTE_CHOICES = [(60, "1 hour"), (24 * 60, "1 day"), (7 * 24 * 60, "1 week")]
FOREVER = timedelta(days=365 * 100)


def _rule(access: Access, code: uuid.UUID) -> Rule:
    return get_object_or_404(Rule, organization=access.organization, code=code)


def _last_message() -> dict:
    """Each channel's latest message: when it was created, whether it went out, and its error if not."""
    latest = Message.objects.filter(channel=OuterRef("pk")).order_by("-created", "-id")
    return {
        "last_created": Subquery(latest.values("created")[:1]),
        "last_sent": Subquery(latest.values("sent")[:1]),
        "last_error": Subquery(latest.values("last_error")[:1]),
    }


def _page(request, access: Access, status: int = 200, **extra):
    org = access.organization
    context = {
        "access": access,
        "channels": Channel.objects.filter(organization=org).select_related("endpoint").annotate(**_last_message()),
        "rules": Rule.objects.filter(organization=org)
        .prefetch_related("channels", "providers")
        .annotate(firing=Exists(Incident.objects.filter(rule=OuterRef("pk"), closed=None))),
        "events": Event.objects.filter(rule__organization=org).select_related("rule").order_by("-created", "-id")[:20],
        "channel_kinds": Channel.Kind.choices,
        "rule_kinds": Rule.Kind.choices,
        "providers": Provider.objects.filter(organization=org).order_by("name"),
        "endpoints": WebhookEndpoint.objects.filter(organization=org),
        "now": timezone.now(),
        **extra,
    }
    return render(request, "alerts/alerts.html", context, status=status)


@org_required
def alert_list(request, access: Access):
    return _page(request, access)


def _form_data(request) -> dict:
    data = {key: request.POST.get(key, "") for key in request.POST}
    for key in ("providers", "channels"):
        data[key] = request.POST.getlist(key)
    return data


@org_required(manage=True)
@require_POST
def channel_create(request, access: Access):
    try:
        channel = create_channel(access.organization, _form_data(request))
    except ConfigError as exc:
        return _page(request, access, 400, channel_error=exc, channel_form=request.POST)
    messages.success(request, f"Channel {channel.name!r} added. Add it to a rule, then send a test message.")
    return redirect("alerts:list")


def _channel_form_page(request, access: Access, channel: Channel, status: int = 200, **extra):
    context = {
        "access": access,
        "channel": channel,
        "endpoints": WebhookEndpoint.objects.filter(organization=access.organization),
        "form": {
            "name": channel.name,
            "emails": channel.emails,
            "endpoint": str(channel.endpoint.code) if channel.endpoint else "",
        },
        **extra,
    }
    return render(request, "alerts/channel_edit.html", context, status=status)


@org_required(manage=True)
def channel_edit(request, access: Access, code: uuid.UUID):
    """Rename a channel or change where it sends. Its webhook URL is a secret: shown masked, kept when the
    field is left blank."""
    channel = get_object_or_404(Channel.objects.select_related("endpoint"), organization=access.organization, code=code)
    if request.method != "POST":
        return _channel_form_page(request, access, channel)
    try:
        update_channel(channel, _form_data(request))
    except ConfigError as exc:
        channel = get_object_or_404(Channel.objects.select_related("endpoint"), pk=channel.pk)
        form = {key: request.POST.get(key, "") for key in ("name", "emails", "endpoint")}
        return _channel_form_page(request, access, channel, 400, error=exc, form=form)
    messages.success(request, f"Channel {channel.name!r} saved.")
    return redirect("alerts:list")


@org_required(manage=True)
@require_POST
def channel_delete(request, access: Access, code: uuid.UUID):
    channel = get_object_or_404(Channel, organization=access.organization, code=code)
    channel.delete()
    messages.success(request, f"Channel {channel.name!r} deleted.")
    return redirect("alerts:list")


@org_required(manage=True)
@require_POST
def rule_create(request, access: Access):
    try:
        rule = create_rule(access.organization, _form_data(request))
    except ConfigError as exc:
        return _page(
            request,
            access,
            400,
            rule_error=exc,
            rule_form=request.POST,
            checked_providers=set(request.POST.getlist("providers")),
            checked_channels=set(request.POST.getlist("channels")),
        )
    messages.success(request, f"Rule {rule.name!r} created.")
    return redirect("alerts:rule", code=rule.code)


def _rule_form_page(request, access: Access, rule: Rule, status: int = 200, **extra):
    org = access.organization
    context = {
        "access": access,
        "rule": rule,
        "providers": Provider.objects.filter(organization=org).order_by("name"),
        "channels": Channel.objects.filter(organization=org),
        "form": {
            "name": rule.name,
            "workflows": ", ".join(rule.workflows),
            "minutes": rule.minutes,
            "threshold": f"{rule.threshold:g}",
            "window": rule.window,
        },
        "checked_providers": {str(p.code) for p in rule.providers.all()},
        "checked_channels": {str(c.code) for c in rule.channels.all()},
        **extra,
    }
    return render(request, "alerts/rule_edit.html", context, status=status)


@org_required(manage=True)
def rule_edit(request, access: Access, code: uuid.UUID):
    """Change a rule's name, scope, thresholds and channels (its kind stays)."""
    rule = _rule(access, code)
    if request.method != "POST":
        return _rule_form_page(request, access, rule)
    try:
        update_rule(rule, _form_data(request))
    except ConfigError as exc:
        return _rule_form_page(
            request,
            access,
            _rule(access, code),
            400,
            error=exc,
            form={key: request.POST.get(key, "") for key in ("name", "workflows", "minutes", "threshold", "window")},
            checked_providers=set(request.POST.getlist("providers")),
            checked_channels=set(request.POST.getlist("channels")),
        )
    messages.success(request, f"Rule {rule.name!r} saved.")
    return redirect("alerts:rule", code=rule.code)


@org_required
def rule_detail(request, access: Access, code: uuid.UUID):
    return _rule_page(request, access, _rule(access, code))


def _rule_page(request, access: Access, rule: Rule, status: int = 200):
    context = {
        "access": access,
        "rule": rule,
        "incidents": rule.incidents.annotate(n_events=Count("events"))[:20],
        "events": rule.events.select_related("run").order_by("-created", "-id")[:50],
        "sent": rule.messages.select_related("channel")[:30],
        "mute_choices": MUTE_CHOICES,
        "muted": rule.is_muted(),
        "firing": rule.incidents.filter(closed=None).exists(),
        "forever": rule.muted_until and rule.muted_until - timezone.now() > FOREVER / 2,
    }
    return render(request, "alerts/rule.html", context, status=status)


@org_required(manage=True)
@require_POST
def rule_test(request, access: Access, code: uuid.UUID):
    rule = _rule(access, code)
    results = send_test(rule)
    if not results:
        messages.error(request, "This rule has no channel to test.")
    for channel, error in results:
        if error:
            messages.error(request, f"{channel.name}: {error}")
        else:
            messages.success(request, f"{channel.name}: test message sent.")
    return redirect("alerts:rule", code=rule.code)


@org_required(manage=True)
@require_POST
def rule_mute(request, access: Access, code: uuid.UUID):
    """`minutes`: mute that long (at most a year); "forever": until unmuted; "0": unmute. Anything else
    (missing, not a whole number, out of range) changes nothing and says why."""
    rule = _rule(access, code)
    value = request.POST.get("minutes", "").strip()
    if value == "forever":
        rule.muted_until = timezone.now() + FOREVER
    else:
        minutes = int(value) if value.isascii() and value.isdigit() else -1
        if not 0 <= minutes <= MAX_MUTE_MINUTES:
            messages.error(request, f"Mute for how long? Send minutes from 0 to {MAX_MUTE_MINUTES}, or forever.")
            return _rule_page(request, access, rule, 400)
        rule.muted_until = timezone.now() + timedelta(minutes=minutes) if minutes else None
    rule.save(update_fields=["muted_until"])
    messages.success(request, f"{rule.name!r} is {'muted' if rule.is_muted() else 'active again'}.")
    return redirect("alerts:rule", code=rule.code)


@org_required(manage=True)
@require_POST
def rule_delete(request, access: Access, code: uuid.UUID):
    rule = _rule(access, code)
    rule.delete()
    messages.success(request, f"Rule {rule.name!r} deleted.")
    return redirect("alerts:list")
