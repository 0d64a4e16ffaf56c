"""Providers and their health in the JSON API. Never a secret: not the credential, not its hint."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from django.http import HttpRequest
from ninja import Field, Router, Schema

from accounts.api_auth import caller
from comfytrack.api_errors import errors
from providers.health import providers_with_health

if TYPE_CHECKING:
    from providers.health import ProviderWithHealth

router = Router(tags=["providers"])


class CredentialHealth(Schema):
    id: UUID
    name: str
    is_active: bool
    last_ok: datetime | None = Field(description="Last successful call (a sync, a Sync now, a test).")
    last_failure: datetime | None = Field(description="Last failed call; its message is last_error.")
    failing_since: datetime | None
    last_error: str
    healthy: bool | None = Field(description="The latest outcome: true a success, false a failure, null none yet.")
    runs_in_flight: int


class ProviderOut(Schema):
    id: UUID
    name: str
    kind: str
    kind_label: str
    is_active: bool
    healthy: bool = Field(description="Every active credential's latest call succeeded (or none was made yet).")
    last_ok: datetime | None = Field(description="Last successful call with any of its credentials.")
    failing_since: datetime | None
    last_error: str = Field(description="The failing credential's last error, empty when healthy.")
    runs_in_flight: int = Field(description="Runs pending, queued or running on this provider.")
    credentials: list[CredentialHealth]


def provider_json(provider: ProviderWithHealth) -> dict:
    credentials = [c for c in provider.credentials.all()]
    active = [c for c in credentials if c.is_active]
    failing = sorted((c for c in active if c.latest_outcome == "failing"), key=lambda c: c.last_failure or c.created)
    oks = [c.last_ok for c in credentials if c.last_ok]
    return {
        "id": provider.code,
        "name": provider.name,
        "kind": provider.kind,
        "kind_label": provider.kind_label,
        "is_active": provider.is_active,
        "healthy": bool(active) and not failing,
        "last_ok": max(oks) if oks else None,
        "failing_since": (failing[0].failing_since or failing[0].last_failure) if failing else None,
        "last_error": failing[0].last_error if failing else "",
        "runs_in_flight": provider.runs_in_flight,
        "credentials": [
            {
                "id": c.code,
                "name": c.name,
                "is_active": c.is_active,
                "last_ok": c.last_ok,
                "last_failure": c.last_failure,
                "failing_since": c.failing_since,
                "last_error": c.last_error,
                "healthy": {"ok": True, "failing": False}.get(c.latest_outcome),
                "runs_in_flight": getattr(c, "runs_in_flight", 0),
            }
            for c in credentials
        ],
    }


@router.get("", response={200: list[ProviderOut], **errors()}, summary="Providers and their health")
def list_providers(request: HttpRequest):
    """The organization's providers with credential health and the number of runs in flight."""
    return [provider_json(p) for p in providers_with_health(caller(request).organization_id)]
