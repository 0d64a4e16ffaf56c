"""Registering runs that already exist on a provider."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from providers.models import Provider
from runs.models import Origin, Run


def track_run(
    provider: Provider, external_id: str, *, origin: str = Origin.TRACKED, created_by=None
) -> tuple[Run, bool]:
    """Idempotent: the same (provider, external_id) returns the existing run. The run is due at once."""
    existing = Run.objects.filter(provider=provider, external_id=external_id).first()
    if existing is not None:
        return existing, False
    credential = provider.credentials.filter(is_active=True).first()
    try:
        with transaction.atomic():
            run = Run.objects.create(
                organization_id=provider.organization_id,
                provider=provider,
                credential=credential,
                external_id=external_id,
                origin=origin,
                created_by=created_by,
            )
    except IntegrityError:
        # Tracked concurrently by someone else: theirs wins, and it is the same run.
        return Run.objects.get(provider=provider, external_id=external_id), False
    return run, True
