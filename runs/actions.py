"""What people and integrations can do to a run: cancel it, retry it, sync it now.

Shared by the dashboard views and the JSON API, which only check access and translate
`ActionError` into a message or an HTTP status.
"""

from __future__ import annotations

from django.utils import timezone

from providers.clients.base import ProviderError, SubmissionRejected, Unsupported
from providers.crypto import SecretUnreadable
from providers.models import Provider
from runs.applying import mark_status
from runs.fetching import client_options, fetch_batch
from runs.models import EventSource, Origin, Run, RunOutput, Status
from runs.submission import submit_run
from runs.sync import SweepStats, apply_result


class ActionError(Exception):
    """An action that cannot be done, with a message for people and an HTTP-ish status."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def sync_run_now(run: Run) -> Run:
    """Ask the provider about this run right away and apply the answer (same path as the sweep).

    Raises ActionError (502) when the provider could not answer, with its reason: the failure is
    recorded on the run and its credential as a sweep's would be."""
    error = _sync(run)
    if error is not None:
        raise ActionError(f"{run.provider.name} did not answer: {error.message}", status=502)
    return run


def _sync(run: Run) -> ProviderError | None:
    """Sync the run now; returns the provider's error, if it gave one instead of an answer."""
    if run.is_finished or not run.external_id:
        return None
    result = fetch_batch([run]).get(run.pk) or ProviderError("No answer for this run.")
    apply_result(run, result, SweepStats())
    run.refresh_from_db()
    return result if isinstance(result, ProviderError) else None


def cancel_run(run: Run, *, source: str = EventSource.API) -> Run:
    """Ask the provider to cancel; the provider's answer (polled at once) moves the status."""
    if run.is_finished:
        raise ActionError(f"This run already {run.get_status_display().lower()}; there is nothing to cancel.")
    if not run.external_id:
        # Never reached the provider (a submission still in flight or stuck): cancel it here.
        mark_status(run, Status.CANCELLED, source, "Cancelled before the provider accepted it.")
        return run
    if not run.provider.client_class.supports_cancel:
        raise ActionError(f"{run.provider.kind_label} has no API to cancel a run.")
    try:
        client = run.provider.client(run.credential, options=client_options(run.provider))
        client.call(client.cancel, run.external_id)
    except Unsupported as exc:
        raise ActionError(exc.message) from None
    except (ProviderError, SecretUnreadable) as exc:
        raise ActionError(f"{run.provider.name} did not cancel the run: {exc}", status=502) from None
    now = timezone.now()
    Run.objects.filter(pk=run.pk).update(cancel_requested=now, next_sync_after=now)
    run.cancel_requested = now
    _sync(run)  # the cancel was sent; if this look fails, the sweep's next one tells
    return run


def retry_run(run: Run, *, provider: Provider | None = None, created_by=None) -> Run:
    """A new run with the same workflow and inputs (optionally on another provider); the original stays."""
    target = provider or run.provider
    if target.organization_id != run.organization_id:
        raise ActionError("Retry on a provider of the same organization.", status=404)
    if not run.workflow:
        raise ActionError("This run was tracked by its id, so comfytrack has no workflow to submit again.", status=409)
    try:
        return submit_run(target, run.workflow, run.inputs, origin=Origin.RETRY, created_by=created_by, retry_of=run)
    except SubmissionRejected as exc:
        raise ActionError(f"{target.name} refused the workflow: {exc.message}", status=422) from None


def retry_archiving(run: Run) -> Run:
    """Archive the run's outputs again now, including those the archive gave up on (after a full disk
    was cleared, say); each gets a fresh count of attempts."""
    waiting = RunOutput.objects.filter(run=run, archived=None).exclude(provider_url="")
    if not waiting.exists():
        raise ActionError("Every output of this run is archived already; there is nothing to retry.")
    waiting.update(next_archive_after=timezone.now(), archive_attempts=0)
    return run
