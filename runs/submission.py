"""Submitting new runs to a provider (dashboard and API).

1. Record the run first (`pending`, no external id yet), so a request is never lost.
2. Call the provider outside any transaction (a slow provider must not hold locks).
3. Store the provider's id and make the run due at once; a failed submission becomes a `failed` run
   carrying the provider's message (never a 500, never a silent drop).

A submission that is invalid, by comfytrack's own check (inputs naming no node of the workflow, before
any provider call) or by the provider's validation (ComfyUI's 400 with node errors), raises
`SubmissionRejected` instead and leaves no run: nothing started, and callers show the form or the 422
with the nodes and inputs at fault (docs/api.md "Submitting").

Idempotent: the same (organization, idempotency_key) returns the same run, whoever submitted first.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from providers.clients.base import ProviderError, SubmissionRejected
from providers.clients.comfyui import override_problems
from providers.crypto import SecretUnreadable
from providers.models import Provider
from runs.applying import mark_status
from runs.fetching import client_options
from runs.models import EventSource, Origin, Run, Status
from runs.times import TimeSource

logger = logging.getLogger("runs.submission")

SUBMIT_ORIGINS = (Origin.DASHBOARD, Origin.API, Origin.RETRY, Origin.DEMO)


def submit_run(
    provider: Provider,
    workflow: dict[str, Any],
    inputs: dict[str, Any] | None = None,
    *,
    origin: str,
    created_by=None,
    idempotency_key: str | None = None,
    options: dict[str, Any] | None = None,
    retry_of: Run | None = None,
) -> Run:
    """Submit `workflow` with `inputs` to `provider`; returns the run (pending and due, or failed)."""
    if origin not in SUBMIT_ORIGINS:
        raise ValueError(f"origin must be one of {', '.join(SUBMIT_ORIGINS)}, not {origin!r}")
    key = (idempotency_key or "").strip()[:200] or None
    if key is not None:
        existing = Run.objects.filter(organization_id=provider.organization_id, idempotency_key=key).first()
        if existing is not None:
            return existing
    if provider.client_class.inputs_override_nodes and (problems := override_problems(workflow, inputs)):
        text = "; ".join(p.message for p in problems)
        raise SubmissionRejected(f"{text[:1].upper()}{text[1:]}.", problems)
    credential = provider.credentials.filter(is_active=True).first()
    try:
        with transaction.atomic():
            run = Run.objects.create(
                organization_id=provider.organization_id,
                provider=provider,
                credential=credential,
                workflow=workflow or {},
                inputs=inputs or {},
                origin=origin,
                created_by=created_by,
                idempotency_key=key,
                retry_of=retry_of,
                # Not due until the provider has given it an id (the sweep skips runs without one anyway).
                next_sync_after=None,
            )
    except IntegrityError:
        # The same key submitted concurrently: the first one wins and is the answer for both.
        return Run.objects.get(organization_id=provider.organization_id, idempotency_key=key)

    options = dict(options or {})
    if key is not None:
        options.setdefault("idempotency_key", key)  # providers that support it dedupe on their side too
    try:
        client = provider.client(credential, options=client_options(provider))
        external_id = client.call(client.submit, workflow or {}, inputs or {}, options)
    except SubmissionRejected:
        run.delete()  # refused as invalid: nothing started, so there is nothing to follow
        raise
    except (ProviderError, SecretUnreadable) as exc:
        return _failed(run, f"{provider.name} did not accept the run: {exc}")
    except Exception:
        logger.exception("submission of run %s to %s failed", run.code, provider.name)
        return _failed(run, f"Unexpected error while submitting to {provider.name}; the run was not started.")

    now = timezone.now()
    try:
        with transaction.atomic():
            run.external_id, run.next_sync_after = external_id[:200], now
            # The provider queued it by now; its own queue time, when it reports one, replaces this.
            run.queued, run.queued_source = now, TimeSource.OBSERVED
            # save() also refreshes search_text
            run.save(update_fields=["external_id", "next_sync_after", "queued", "queued_source"])
    except IntegrityError:
        # Someone tracked the provider's id in the meantime: that run follows it; this record says why.
        run.external_id, run.next_sync_after = "", None
        return _failed(run, f"{provider.name} answered with run id {external_id!r}, which is already tracked.")
    return run


def _failed(run: Run, message: str) -> Run:
    mark_status(run, Status.FAILED, EventSource.API, message)
    Run.objects.filter(pk=run.pk).update(next_sync_after=None)
    run.next_sync_after = None
    return run
