"""Sending webhook deliveries: claim, send, record, outside the sync sweep.

1. Claim due deliveries with a lease (`comfytrack.leases`), at most `PER_ENDPOINT` per endpoint, so one
   endpoint's backlog never crowds out the others.
2. Send with no database work and no transaction open: every endpoint concurrently, each endpoint's
   deliveries in order, every request bounded by `COMFYTRACK_WEBHOOK_TIMEOUT` (connect, send and
   answer together). A hanging endpoint costs its own slot for at most that long and never delays
   another. After an endpoint's first failure its other claimed deliveries wait for the next pass.
3. Record each attempt on its row: delivered, or the next retry (`WebhookDelivery.retry_delay`: exponential,
   honouring Retry-After, more than a day in all), or given up.

Each send is `comfytrack.safe_http.post`, the one guarded POST alerts use too: the same SSRF rules as output
downloads (resolved addresses checked inside the connector, private hosts only when allow-listed), no
redirects followed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
from django.conf import settings
from django.utils import timezone

from comfytrack import safe_http
from comfytrack.leases import Lease
from comfytrack.loops import run_loop
from comfytrack.safe_http import HostGuard, guarded_session
from webhooks import signing
from webhooks.models import WebhookDelivery

logger = logging.getLogger("webhooks")

# One pass sends a claimed delivery once, bounded by COMFYTRACK_WEBHOOK_TIMEOUT: a lease that is never renewed.
LEASE = Lease(WebhookDelivery, "locked_until", timedelta(minutes=2))
PER_ENDPOINT = 10
MAX_ENDPOINTS = 100
MAX_CONCURRENT_ENDPOINTS = 32
# The allow-list of private targets; refusals name it so an operator knows what to change.
ALLOW_PRIVATE_SETTING = "COMFYTRACK_WEBHOOK_ALLOW_PRIVATE_HOSTS"


@dataclass(frozen=True)
class Job:
    delivery_pk: int
    endpoint_pk: int
    url: str
    secret: str
    event_id: str
    body: bytes


@dataclass
class Outcome:
    delivery_pk: int
    attempted: bool = True
    ok: bool = False
    status_code: int | None = None
    latency_ms: int | None = None
    excerpt: str = ""
    error: str = ""
    retry_after: float | None = None  # seconds the endpoint asked us to wait (429/503 Retry-After)


@dataclass
class DeliveryStats:
    claimed: int = 0
    delivered: int = 0
    failed: int = 0
    deferred: int = 0

    def summary(self) -> str:
        return (
            f"webhooks: {self.claimed} claimed, {self.delivered} delivered, "
            f"{self.failed} failed, {self.deferred} deferred"
        )


# -- 1. claim --------------------------------------------------------------------------------------


def claim_due(now: datetime, max_endpoints: int = MAX_ENDPOINTS) -> list[WebhookDelivery]:
    due = WebhookDelivery.objects.due(now).filter(endpoint__is_active=True)
    endpoint_ids = list(due.order_by().values_list("endpoint_id", flat=True).distinct()[:max_endpoints])
    claimed: list[WebhookDelivery] = []
    for endpoint_id in endpoint_ids:
        batch = due.filter(endpoint_id=endpoint_id).select_related("endpoint").order_by("next_attempt_at", "id")
        claimed += LEASE.claim(batch, PER_ENDPOINT, now=now)
    return claimed


def job_for(delivery: WebhookDelivery) -> Job:
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()
    return Job(
        delivery_pk=delivery.pk,
        endpoint_pk=delivery.endpoint_id,
        url=delivery.endpoint.url,
        secret=delivery.endpoint.signing_secret,
        event_id=delivery.event_id,
        body=body,
    )


# -- 2. send (no database in here) -----------------------------------------------------------------


def target_guard(allow_private: Iterable[str]) -> HostGuard:
    """The SSRF guard for webhook targets (no provider origin: private hosts only when allow-listed)."""
    return HostGuard.for_base_url(None, allow_private, purpose="send to", setting=ALLOW_PRIVATE_SETTING)


async def send_all(jobs: list[Job], timeout: float, allow_private: list[str]) -> list[Outcome]:
    guard = target_guard(allow_private)
    by_endpoint: dict[int, list[Job]] = defaultdict(list)
    for job in jobs:
        by_endpoint[job.endpoint_pk].append(job)
    limit = asyncio.Semaphore(MAX_CONCURRENT_ENDPOINTS)
    async with guarded_session(guard, timeout=timeout, max_connections=MAX_CONCURRENT_ENDPOINTS * 2) as client:
        batches = await asyncio.gather(
            *(_send_endpoint(client, guard, queue, timeout, limit) for queue in by_endpoint.values())
        )
    return [outcome for batch in batches for outcome in batch]


async def _send_endpoint(
    client: aiohttp.ClientSession, guard: HostGuard, queue: list[Job], timeout: float, limit: asyncio.Semaphore
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    async with limit:
        for index, job in enumerate(queue):
            outcome = await send_one(client, guard, job, timeout)
            outcomes.append(outcome)
            if not outcome.ok:
                # The endpoint is failing: don't spend more time on it in this pass.
                outcomes += [Outcome(j.delivery_pk, attempted=False) for j in queue[index + 1 :]]
                break
    return outcomes


async def send_one(client: aiohttp.ClientSession, guard: HostGuard, job: Job, timeout: float) -> Outcome:
    if not job.secret:
        return Outcome(
            job.delivery_pk, error="The endpoint's signing secret cannot be read (was the encryption key removed?)."
        )
    headers = signing.headers(job.secret, job.event_id, int(time.time()), job.body)
    sent = await safe_http.post(client, guard, job.url, job.body, headers=headers, timeout=timeout)
    return Outcome(
        job.delivery_pk,
        ok=sent.ok,
        status_code=sent.status_code,
        latency_ms=sent.latency_ms,
        excerpt=sent.excerpt,
        error=sent.error,
        retry_after=sent.retry_after,
    )


# -- 3. record -------------------------------------------------------------------------------------


def record(delivery: WebhookDelivery, outcome: Outcome, now: datetime) -> str:
    """Write one attempt's outcome with one UPDATE; returns "delivered", "retrying", "failed",
    "deferred" (not attempted this pass) or "gone" (the endpoint was deleted meanwhile)."""
    values: dict = {"locked_until": None}
    state = "deferred"
    if outcome.attempted:
        delivery.attempt += 1
        values.update(
            attempt=delivery.attempt,
            last_attempt=now,
            status_code=outcome.status_code,
            latency_ms=outcome.latency_ms,
            response_excerpt=outcome.excerpt,
            error=outcome.error[:2000],
        )
        if outcome.ok:
            values.update(delivered=now, next_attempt_at=None)
            state = "delivered"
        elif (delay := delivery.retry_delay(outcome.retry_after)) is None:
            values.update(failed=now, next_attempt_at=None)
            state = "failed"
        else:
            values.update(next_attempt_at=now + delay)
            state = "retrying"
    if not WebhookDelivery.objects.filter(pk=delivery.pk).update(**values):
        return "gone"
    for name, value in values.items():
        setattr(delivery, name, value)
    return state


def deliver_due_webhooks(*, now: datetime | None = None, timeout: float | None = None) -> DeliveryStats:
    """One pass: send every claimable due delivery once. Plain function: django-q2's schedule runs
    it through `deliver_loop`, `manage.py send_webhooks --once` runs it by hand, tests call it."""
    fixed_now = now
    now = now or timezone.now()
    timeout = float(timeout or settings.COMFYTRACK_WEBHOOK_TIMEOUT)
    stats = DeliveryStats()
    claimed = claim_due(now)
    stats.claimed = len(claimed)
    if not claimed:
        return stats
    jobs = [job_for(d) for d in claimed]
    outcomes = asyncio.run(send_all(jobs, timeout, list(settings.COMFYTRACK_WEBHOOK_ALLOW_PRIVATE_HOSTS)))
    by_pk = {d.pk: d for d in claimed}
    recorded_at = fixed_now or timezone.now()  # after the sends: the next retry counts from here
    for outcome in outcomes:
        state = record(by_pk[outcome.delivery_pk], outcome, recorded_at)
        stats.delivered += state == "delivered"
        stats.failed += state in ("retrying", "failed")
        stats.deferred += state == "deferred"
    return stats


WEBHOOKS_TURN = "webhooks"


def deliver_loop(seconds: float = 100.0, idle_sleep: float = 1.0) -> int:
    """What the django-q2 schedule runs every minute: passes for up to `seconds`, handing over to the
    next execution when it starts (comfytrack.loops); sub-minute retries come from `next_attempt_at`.
    Overlapping executions are safe: deliveries are leased."""
    return run_loop(delivery_pass, idle_sleep, seconds=seconds, turn=WEBHOOKS_TURN)


def delivery_pass(left: float, should_stop: Callable[[], bool]) -> tuple[int, bool]:
    """One pass of a delivery loop: (deliveries sent, whether any were due)."""
    stats = deliver_due_webhooks()
    if stats.claimed:
        logger.info(stats.summary())
    return stats.delivered, bool(stats.claimed)
