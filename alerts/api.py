"""Alert channels and rules in the JSON API (`/api/v1/alerts/…`): what the settings pages do (add, edit,
delete, test, mute)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Router, Schema, Status

from accounts.access import current_access
from accounts.api_auth import caller
from alerts.config import (
    MAX_MUTE_MINUTES,
    MAX_SCOPE,
    ConfigError,
    create_channel,
    create_rule,
    update_channel,
    update_rule,
)
from alerts.models import Channel, Rule
from alerts.sending import send_test
from comfytrack.api_errors import ApiError, errors, invalid, not_found

router = Router(tags=["alerts"])


class ChannelIn(Schema):
    name: str = Field(max_length=100)
    kind: str = Field(description="email, slack, discord or webhook.")
    emails: str | None = Field(None, description="email: addresses, comma-separated.")
    url: str | None = Field(None, description="slack/discord: the incoming-webhook URL (stored encrypted).")
    endpoint: str | None = Field(None, description="webhook: the id of one of the organization's webhook endpoints.")


class ChannelPatch(Schema):
    """Only the fields sent change. `kind` may be sent but not changed."""

    name: str | None = Field(None, max_length=100)
    kind: str | None = Field(None, max_length=20, description="The channel's kind (it cannot change).")
    emails: str | None = Field(None, max_length=5000, description="email: addresses, comma-separated.")
    url: str | None = Field(
        None, max_length=2000, description="slack/discord: a new incoming-webhook URL; blank or absent keeps it."
    )
    endpoint: str | None = Field(None, max_length=100, description="webhook: a webhook endpoint's id.")


class ChannelOut(Schema):
    id: UUID
    name: str
    kind: str
    target: str = Field(description="Where it sends; a webhook URL is shown only by its host and last characters.")
    created: datetime


class RuleIn(Schema):
    name: str = Field(max_length=100)
    kind: str = Field(description="run_failed, run_timed_out_or_lost, credential_failing or success_rate.")
    channels: list[str] = Field(max_length=MAX_SCOPE, description="Channel ids.")
    providers: list[str] = Field(
        default_factory=list, max_length=MAX_SCOPE, description="Provider ids or names (empty: all)."
    )
    workflows: list[str] = Field(
        default_factory=list, max_length=MAX_SCOPE, description="Workflow fingerprints (empty: all)."
    )
    minutes: int | None = Field(None, description="credential_failing: failing at least this many minutes.")
    threshold: float | None = Field(None, description="success_rate: alert below this percentage.")
    window: int | None = Field(None, description="success_rate: over this many finished runs.")


class RulePatch(Schema):
    """Only the fields sent change; null resets a number to its default. `kind` may be sent but not changed."""

    name: str | None = Field(None, max_length=100)
    kind: str | None = Field(None, max_length=30, description="The rule's kind (it cannot change).")
    channels: list[str] | None = Field(None, max_length=MAX_SCOPE, description="Channel ids (at least one).")
    providers: list[str] | None = Field(None, max_length=MAX_SCOPE, description="Provider ids or names (empty: all).")
    workflows: list[str] | None = Field(None, max_length=MAX_SCOPE, description="Workflow fingerprints (empty: all).")
    minutes: int | None = None
    threshold: float | None = None
    window: int | None = None


class RuleOut(Schema):
    id: UUID
    name: str
    kind: str
    summary: str
    channels: list[UUID]
    providers: list[UUID]
    workflows: list[str]
    minutes: int
    threshold: float
    window: int
    muted_until: datetime | None
    firing: bool = Field(description="An incident of this rule is open.")
    created: datetime


class MuteIn(Schema):
    minutes: int | None = Field(None, ge=0, le=MAX_MUTE_MINUTES, description="Mute this long; 0 or null unmutes.")


class TestResult(Schema):
    channel: UUID
    ok: bool
    error: str | None


def _org(request: HttpRequest) -> int:
    return caller(request).organization_id


def _manager(request: HttpRequest) -> None:
    """Changing alerts from a signed-in session takes the admin role, as on the pages (a member reads them).
    An API key with write access is the organization's own: it may."""
    who = caller(request)
    if who.api_key is None:
        access = current_access(request)
        if access is None or not access.can_manage:
            raise ApiError(403, "Only owners and admins change alerts.", "forbidden")


def channel_json(channel: Channel) -> dict[str, Any]:
    return {
        "id": channel.code,
        "name": channel.name,
        "kind": channel.kind,
        "target": channel.target,
        "created": channel.created,
    }


def rule_json(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.code,
        "name": rule.name,
        "kind": rule.kind,
        "summary": rule.summary,
        "channels": [c.code for c in rule.channels.all()],
        "providers": [p.code for p in rule.providers.all()],
        "workflows": rule.workflows,
        "minutes": rule.minutes,
        "threshold": rule.threshold,
        "window": rule.window,
        "muted_until": rule.muted_until if rule.is_muted() else None,
        "firing": rule.incidents.filter(closed=None).exists(),
        "created": rule.created,
    }


def _configure[T, Target](
    request: HttpRequest, func: Callable[[Target, dict[str, Any]], T], target: Target, data: dict[str, Any]
) -> T:
    """For an owner or admin, create (`target`: the organization) or change (`target`: the channel or rule)
    with one of alerts.config's functions; a ConfigError is a 422 naming the field."""
    _manager(request)
    try:
        return func(target, data)
    except ConfigError as exc:
        raise invalid(exc.message, exc.field) from None


def _get_channel(request: HttpRequest, channel_id: UUID) -> Channel:
    channel = Channel.objects.filter(organization=_org(request), code=channel_id).select_related("endpoint").first()
    if channel is None:
        raise not_found("No such alert channel in this organization.")
    return channel


def _get_rule(request: HttpRequest, rule_id: UUID) -> Rule:
    rule = Rule.objects.filter(organization=_org(request), code=rule_id).first()
    if rule is None:
        raise not_found("No such alert rule in this organization.")
    return rule


@router.get("/channels", response={200: list[ChannelOut], **errors()}, summary="Alert channels")
def channels(request: HttpRequest):
    return [channel_json(c) for c in Channel.objects.filter(organization=_org(request)).select_related("endpoint")]


@router.post("/channels", response={201: ChannelOut, **errors(403)}, summary="Add an alert channel")
def add_channel(request: HttpRequest, payload: ChannelIn):
    return Status(201, channel_json(_configure(request, create_channel, caller(request).organization, payload.dict())))


@router.get("/channels/{channel_id}", response={200: ChannelOut, **errors(404)}, summary="An alert channel")
def channel_detail(request: HttpRequest, channel_id: UUID):
    return channel_json(_get_channel(request, channel_id))


@router.patch("/channels/{channel_id}", response={200: ChannelOut, **errors(403, 404)}, summary="Edit a channel")
def edit_channel(request: HttpRequest, channel_id: UUID, payload: ChannelPatch):
    """Change the name or where it sends (its kind stays). A Slack/Discord URL is a secret: `target` shows
    it masked, and a blank or absent `url` keeps the stored one."""
    return channel_json(
        _configure(request, update_channel, _get_channel(request, channel_id), payload.dict(exclude_unset=True))
    )


@router.delete("/channels/{channel_id}", response={204: None, **errors(403, 404)}, summary="Delete a channel")
def delete_channel(request: HttpRequest, channel_id: UUID):
    _manager(request)
    deleted, _ = Channel.objects.filter(organization=_org(request), code=channel_id).delete()
    if not deleted:
        raise not_found("No such alert channel in this organization.")
    return Status(204, None)


@router.get("/rules", response={200: list[RuleOut], **errors()}, summary="Alert rules")
def rules(request: HttpRequest):
    found = Rule.objects.filter(organization=_org(request)).prefetch_related("channels", "providers")
    return [rule_json(r) for r in found]


@router.post("/rules", response={201: RuleOut, **errors(403)}, summary="Add an alert rule")
def add_rule(request: HttpRequest, payload: RuleIn):
    return Status(201, rule_json(_configure(request, create_rule, caller(request).organization, payload.dict())))


@router.get("/rules/{rule_id}", response={200: RuleOut, **errors(404)}, summary="An alert rule")
def rule_detail(request: HttpRequest, rule_id: UUID):
    return rule_json(_get_rule(request, rule_id))


@router.patch("/rules/{rule_id}", response={200: RuleOut, **errors(403, 404)}, summary="Edit an alert rule")
def edit_rule(request: HttpRequest, rule_id: UUID, payload: RulePatch):
    """Change the name, scope, thresholds or channels (its kind stays)."""
    return rule_json(_configure(request, update_rule, _get_rule(request, rule_id), payload.dict(exclude_unset=True)))


@router.delete("/rules/{rule_id}", response={204: None, **errors(403, 404)}, summary="Delete an alert rule")
def delete_rule(request: HttpRequest, rule_id: UUID):
    _manager(request)
    _get_rule(request, rule_id).delete()
    return Status(204, None)


@router.post("/rules/{rule_id}/mute", response={200: RuleOut, **errors(403, 404)}, summary="Mute or unmute")
def mute_rule(request: HttpRequest, rule_id: UUID, payload: MuteIn):
    """Muted rules keep recording incidents but send nothing until `muted_until`."""
    _manager(request)
    rule = _get_rule(request, rule_id)
    rule.muted_until = timezone.now() + timedelta(minutes=payload.minutes) if payload.minutes else None
    rule.save(update_fields=["muted_until"])
    return rule_json(rule)


@router.post("/rules/{rule_id}/test", response={200: list[TestResult], **errors(403, 404)}, summary="Send a test")
def test_rule(request: HttpRequest, rule_id: UUID):
    """Send a test message to each of the rule's channels now; one result per channel."""
    _manager(request)
    results = send_test(_get_rule(request, rule_id))
    return [{"channel": c.code, "ok": error is None, "error": error} for c, error in results]
