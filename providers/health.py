"""Checking that a provider and credential work (admin action, dashboard button, API)."""

from __future__ import annotations

from django.utils import timezone

from providers.clients.base import ProviderError
from providers.crypto import SecretUnreadable
from providers.models import Credential, Provider


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
