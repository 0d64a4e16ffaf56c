"""Per-credential circuit breaker: when a credential's calls fail, its runs wait together, and one probe
decides for all of them.

- A failure that is the credential's (unreachable, 5xx, timeouts, 429/503, 401/403) opens the breaker:
  `Credential.mark_failed` sets `blocked_until` (1, 2, 4, 8 s, never sooner than Retry-After; 1 h for a
  refused credential). While `consecutive_failures` > 0 the sweep's claim leaves the credential's runs
  alone (runs.sync.claim_due_runs): no run keeps a back-off of its own, so none lags behind the others.
- Once `blocked_until` has passed the breaker is half-open: `probe_credentials`, at the start of each
  sweep, takes the probe (a conditional UPDATE, so of several workers one probes) and asks the provider
  about one of the credential's runs. An answer closes the breaker and makes every in-flight run of the
  credential due at once, so they are synced in this sweep, in the usual batches and concurrency; a
  failure opens it again for longer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from comfytrack.leases import Lease
from providers.clients.base import ProviderError
from providers.models import Credential
from runs.fetching import fetch_batch
from runs.models import IN_FLIGHT, SWEEP_FIELDS, Run

# runs.sync.apply_result: (run, answer, the sweep's stats, now=…) -> None
ApplyResult = Callable[..., None]

logger = logging.getLogger("runs.sync")

# How long a probe holds the credential (other workers skip it meanwhile); longer than any request.
PROBE_LEASE = timedelta(seconds=150)
# Half-open credentials probed per sweep (each probe is one fetch, on this thread).
MAX_PROBES = 20


def counts_against_credential(error: ProviderError) -> bool:
    """Auth failures, Retry-After and transient errors (5xx, bad bodies, timeouts) are the credential's
    (or its provider's); a permanent per-run error (e.g. a 400 for one id) is that run's alone."""
    return bool(error.auth_failed or error.retry_after or not error.permanent)


def half_open(now: datetime):
    return Credential.objects.filter(consecutive_failures__gt=0).filter(
        Q(blocked_until__isnull=True) | Q(blocked_until__lte=now)
    )


def probe_credentials(now: datetime, stats: Any, apply_result: ApplyResult, lease: Lease) -> int:
    """Probe each half-open credential with one of its runs (all probes at once, one request each),
    leased with the sweep's `lease`; each answer is written with `apply_result` (the sweep's, which calls this).
    Returns how many closed again."""
    probes: list[tuple[Credential, Run]] = []
    for credential in half_open(now).select_related("provider")[:MAX_PROBES]:
        taken = Credential.objects.filter(
            pk=credential.pk,
            consecutive_failures=credential.consecutive_failures,
            blocked_until=credential.blocked_until,
        ).update(blocked_until=timezone.now() + PROBE_LEASE)
        if not taken:
            continue  # another worker probes it
        run = _lease_one(credential, lease)
        if run is None:
            # Nothing in flight to ask about: close it; the next failure opens it again.
            credential.mark_ok(now)
        else:
            probes.append((credential, run))
    if not probes:
        return 0
    results = fetch_batch([run for _, run in probes])
    closed = 0
    for credential, run in probes:
        result = results.get(run.id) or ProviderError("No answer for this run.")
        if isinstance(result, ProviderError) and counts_against_credential(result):
            stats.flagged.add(credential.pk)  # this probe's failure is recorded here, once
            credential.blocked_until = None
            credential.mark_failed(
                result.message, permanent=result.auth_failed, retry_after=result.retry_after, now=now
            )
            stats.failures.setdefault(credential.pk, (credential.provider.name, result.message))
        else:
            credential.mark_ok(now)
            closed += 1
            # Every run it held back is due now: the claims of this sweep take them, batch by batch.
            Run.objects.filter(credential=credential, status__in=IN_FLIGHT).exclude(pk=run.pk).update(
                next_sync_after=now
            )
            logger.info("%s is answering again: its runs are synced now", credential)
        apply_result(run, result, stats, now=now)
    return closed


def _lease_one(credential: Credential, lease: Lease) -> Run | None:
    candidates = (
        Run.objects.filter(credential=credential, status__in=IN_FLIGHT)
        .exclude(external_id="")
        .filter(lease.free(timezone.now()))
        .order_by("next_sync_after")
        .only(*SWEEP_FIELDS)
    )
    for run in lease.claim(candidates, 1):
        run.credential = credential
        return run
    return None
