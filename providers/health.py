"""Checking that a provider and credential work (admin action, dashboard button, API)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone

from providers.clients.base import IN_FLIGHT_STATUSES, ProviderError
from providers.crypto import SecretUnreadable
from providers.models import Credential, Provider

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

    class _Health(TypedDict):
        runs_in_flight: int

    ProviderWithHealth = WithAnnotations[Provider, _Health]


def providers_with_health(organization_id: int) -> QuerySet[ProviderWithHealth]:
    """An organization's providers by name, with `runs_in_flight` and their credentials by name, for the
    providers page and API. `only` keeps the encrypted secret column out: health is shown, never decrypted.

    `runs` is the reverse relation the runs app's `Run` declares; the statuses come from the client contract,
    so this app imports nothing from `runs` (the layers, docs/architecture.md)."""
    credentials = (
        Credential.objects.only(
            "code", "provider_id", "name", "is_active", "last_ok", "failing_since", "last_failure", "last_error"
        )
        .annotate(runs_in_flight=Count("runs", filter=Q(runs__status__in=IN_FLIGHT_STATUSES)))
        .order_by("name")
    )
    return (
        Provider.objects.filter(organization_id=organization_id)
        .annotate(runs_in_flight=Count("runs", filter=Q(runs__status__in=IN_FLIGHT_STATUSES)))
        .prefetch_related(Prefetch("credentials", queryset=credentials))
        .order_by("name")
    )


def check_connection(provider: Provider, credential: Credential | None) -> tuple[bool, str]:
    """Ask the provider whether the credential works; record the outcome on the credential.

    Never raises: every failure comes back as (False, a message a person can act on), without secrets.
    """
    try:
        client = provider.client(credential)
        message = client.call(client.check)
    except SecretUnreadable as exc:
        return False, str(exc)
    except ProviderError as exc:
        if credential is not None:
            credential.mark_failed(exc.message, permanent=exc.auth_failed)
        return False, exc.message
    if credential is not None:
        credential.mark_ok(timezone.now())
    return True, message or "Connection OK."
