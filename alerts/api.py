"""Alert channels and rules in the JSON API (`/api/v1/alerts/…`): what the settings pages do."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Router, Schema, Status

from accounts.api_auth import caller
from alerts.config import ConfigError, create_channel, create_rule
from alerts.models import Channel, Rule
from alerts.sending import send_test
from comfytrack.api_errors import errors, invalid, not_found

router = Router(tags=["alerts"])


class ChannelIn(Schema):
    name: str = Field(max_length=100)
    kind: str = Field(description="email, slack, discord or webhook.")
    emails: str | None = Field(None, description="email: addresses, comma-separated.")
    url: str | None = Field(None, description="slack/discord: the incoming-webhook URL (stored encrypted).")
    endpoint: str | None = Field(None, description="webhook: the id of one of the organization's webhook endpoints.")


class ChannelOut(Schema):
    id: UUID
    name: str
    kind: str
    target: str = Field(description="Where it sends; a webhook URL is shown only by its host and last characters.")
    created: datetime


class RuleIn(Schema):
    name: str = Field(max_length=100)
    kind: str = Field(description="run_failed, run_timed_out_or_lost, credential_failing or success_rate.")
    channels: list[str] = Field(description="Channel ids.")
    providers: list[str] = Field(default_factory=list, description="Provider ids or names (empty: all).")
    workflows: list[str] = Field(default_factory=list, description="Workflow fingerprints (empty: all).")
    minutes: int | None = Field(None, description="credential_failing: failing at least this many minutes.")
    threshold: float | None = Field(None, description="success_rate: alert below this percentage.")
    window: int | None = Field(None, description="success_rate: over this many finished runs.")


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
    minutes: int | None = Field(None, ge=0, le=365 * 24 * 60, description="Mute this long; 0 or null unmutes.")


class TestResult(Schema):
    channel: UUID
    ok: bool
    error: str | None


def _org(request: HttpRequest) -> int:
    return caller(request).organization_id


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


def _config(func, request: HttpRequest, payload: Schema):
    try:
        return func(caller(request).organization, payload.dict())
    except ConfigError as exc:
        raise invalid(exc.message, exc.field) from None


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
    return Status(201, channel_json(_config(create_channel, request, payload)))


@router.delete("/channels/{channel_id}", response={204: None, **errors(403, 404)}, summary="Delete a channel")
def delete_channel(request: HttpRequest, channel_id: UUID):
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
    return Status(201, rule_json(_config(create_rule, request, payload)))


@router.get("/rules/{rule_id}", response={200: RuleOut, **errors(404)}, summary="An alert rule")
def rule_detail(request: HttpRequest, rule_id: UUID):
    return rule_json(_get_rule(request, rule_id))


@router.delete("/rules/{rule_id}", response={204: None, **errors(403, 404)}, summary="Delete an alert rule")
def delete_rule(request: HttpRequest, rule_id: UUID):
    _get_rule(request, rule_id).delete()
    return Status(204, None)


@router.post("/rules/{rule_id}/mute", response={200: RuleOut, **errors(403, 404)}, summary="Mute or unmute")
def mute_rule(request: HttpRequest, rule_id: UUID, payload: MuteIn):
    """Muted rules keep recording incidents but send nothing until `muted_until`."""
    rule = _get_rule(request, rule_id)
    rule.muted_until = timezone.now() + timedelta(minutes=payload.minutes) if payload.minutes else None
    rule.save(update_fields=["muted_until"])
    return rule_json(rule)


@router.post("/rules/{rule_id}/test", response={200: list[TestResult], **errors(403, 404)}, summary="Send a test")
def test_rule(request: HttpRequest, rule_id: UUID):
    """Send a test message to each of the rule's channels now; one result per channel."""
    results = send_test(_get_rule(request, rule_id))
    return [{"channel": c.code, "ok": error is None, "error": error} for c, error in results]
