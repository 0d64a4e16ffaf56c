"""Inbound provider webhooks, applied immediately and idempotently.

ComfyDeploy posts `run.updated` / `run.output` events to `/api/v1/hooks/comfydeploy/{provider}/{token}`.
The token is per provider (only its hash is stored). An event goes through `runs.applying.apply_snapshot` like a poll,
so duplicates and out-of-order deliveries are harmless; the run is also made due so the poller
confirms what the webhook said.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from providers.clients.base import ClientOptions, ProviderError, RunSnapshot, RunStatus
from providers.clients.comfydeploy import parse_webhook
from providers.crypto import SecretUnreadable
from providers.models import Provider
from runs.applying import apply_snapshot
from runs.models import EventSource, Run

# Seconds the follow-up GET of a run a webhook finished may take: ComfyDeploy waits for our answer.
CONFIRM_TIMEOUT = 5.0


class WebhookRejected(Exception):
    """The delivery is refused: `status` is the HTTP answer (404 bad provider/token, 400 bad body)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def apply_comfydeploy_webhook(provider: Provider, token: str, payload: Any) -> Run | None:
    """Apply one ComfyDeploy webhook body; returns the run, or None when the run is not tracked here."""
    if provider.kind != "comfydeploy" or not provider.is_active or not provider.check_webhook_token(token):
        raise WebhookRejected("Not found.", 404)
    try:
        snapshot = parse_webhook(payload)
    except ProviderError as exc:
        raise WebhookRejected(exc.message, 400) from None
    run = Run.objects.filter(provider=provider, external_id=snapshot.external_id).first()
    if run is None:
        return None
    if snapshot.status.is_terminal and not run.is_finished:
        snapshot = confirmed_end(run, snapshot)
    apply_snapshot(run, snapshot, EventSource.WEBHOOK)
    if not run.is_finished:
        run.push_next_sync(timedelta(0))  # due now: the poller confirms (and fills in timestamps)
    return run


def confirmed_end(run: Run, hooked: RunSnapshot) -> RunSnapshot:
    """The webhook body carries no times, and a finished run is not polled again: one GET of the run
    gives the provider's end (`ended_at`) and usage (`gpu`, `duration`) before the end is recorded. When
    the GET fails, or does not show the run finished yet, the webhook is applied as it came (its finish
    then observed, marked as such)."""
    try:
        client = run.provider.client(run.credential, options=ClientOptions(timeout=CONFIRM_TIMEOUT))
        answer = client.call(client.fetch, run.external_id)
    except (ProviderError, SecretUnreadable):
        return hooked
    if answer.status.is_terminal and answer.status is not RunStatus.LOST:
        return answer
    return hooked
