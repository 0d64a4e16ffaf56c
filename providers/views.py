"""The providers page: each provider and credential with its health, and a "test connection" button."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.access import Access, org_required
from providers.health import check_connection, providers_with_health
from providers.models import Credential, Provider


@org_required
def provider_list(request, access: Access):
    providers = providers_with_health(access.organization.pk)
    return render(request, "providers/provider_list.html", {"access": access, "providers": providers})


@org_required(write=True)
@require_POST
def provider_test(request, access: Access, code: uuid.UUID):
    provider = get_object_or_404(Provider, organization=access.organization, code=code)
    credentials: list[Credential | None] = [*provider.credentials.filter(is_active=True)] or [None]
    for credential in credentials:
        ok, message = check_connection(provider, credential)
        label = f"{provider.name}" + (f" / {credential.name}" if credential else "")
        (messages.success if ok else messages.error)(request, f"{label}: {message}")
    return redirect("provider-list")
