"""Prometheus metrics at /metrics (prometheus-client; docs/deploy.md lists what to alert on).

Two sources:
- Counters and histograms that the code increments where the thing happens (provider answers and
  errors, sweep duration, API responses). Under gunicorn and the q cluster several processes count:
  with `PROMETHEUS_MULTIPROC_DIR` set (scripts/serve.py sets it), each writes its own file there and a
  scrape adds them up.
- Gauges read from the database at scrape time (runs in flight, sweep lag, breakers, archive and
  webhook backlogs): the truth of the whole deployment, whichever machine or process holds the work.

Labels are provider kinds and credential ids, never names or URLs (organization data, unbounded).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from django.conf import settings
from django.db.models import Count, Min, Q
from django.http import HttpResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

PROVIDER_ANSWERS = Counter(
    "comfytrack_provider_answers",
    "Per-run answers the sync sweep got from providers, by provider kind and outcome (ok or error).",
    ["provider_kind", "outcome"],
)
PROVIDER_ERRORS = Counter(
    "comfytrack_provider_errors",
    "Per-run provider errors seen by the sync sweep, by provider kind and cause.",
    ["provider_kind", "cause"],
)
SWEEP_SECONDS = Histogram(
    "comfytrack_sweep_duration_seconds",
    "Wall time of one sync sweep (claim, fetch and apply of everything due).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120),
)
API_REQUESTS = Counter("comfytrack_api_requests", "JSON API responses by HTTP status.", ["status"])

_PROCESS_METRICS = (PROVIDER_ANSWERS, PROVIDER_ERRORS, SWEEP_SECONDS, API_REQUESTS)


# -- what the engine calls ---------------------------------------------------------------------


def error_cause(error) -> str:
    """A small fixed set of causes for a providers.clients.base.ProviderError (a label value)."""
    status = getattr(error, "status_code", None)
    if getattr(error, "auth_failed", False):
        return "auth"
    if status == 429 or getattr(error, "retry_after", None):
        return "rate_limited"
    if status is None:
        return "unsupported" if getattr(error, "permanent", False) else "network"
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "client_error"
    # A 2xx whose body could not be read as the provider's answer (malformed, truncated, HTML).
    return "bad_answer"


def count_answers(runs: Sequence, results: Mapping) -> None:
    """Count one batch's answers: a snapshot is ok, a ProviderError (or no answer) is an error."""
    from providers.clients.base import RunSnapshot

    for run in runs:
        kind = run.provider.kind
        result = results.get(run.id)
        if isinstance(result, RunSnapshot):
            PROVIDER_ANSWERS.labels(kind, "ok").inc()
        else:
            PROVIDER_ANSWERS.labels(kind, "error").inc()
            PROVIDER_ERRORS.labels(kind, error_cause(result) if result is not None else "no_answer").inc()


@contextmanager
def timed_sweep() -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        SWEEP_SECONDS.observe(time.perf_counter() - start)


class ApiMetricsMiddleware:
    """Counts the JSON API's responses by status."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path_info.startswith("/api/"):
            API_REQUESTS.labels(str(response.status_code)).inc()
        return response


# -- read from the database at scrape time ------------------------------------------------------


class DatabaseCollector(Collector):
    def collect(self):
        from providers.models import Credential
        from runs.models import IN_FLIGHT, Run, RunOutput
        from webhooks.models import WebhookDelivery

        now = timezone.now()
        in_flight = GaugeMetricFamily(
            "comfytrack_runs_in_flight",
            "Runs not finished yet, by status and provider kind.",
            labels=["status", "provider_kind"],
        )
        rows = Run.objects.filter(status__in=IN_FLIGHT).values("status", "provider__kind").annotate(n=Count("id"))
        for row in rows.order_by():
            in_flight.add_metric([row["status"], row["provider__kind"]], row["n"])
        yield in_flight

        overdue = (
            Run.objects.filter(status__in=IN_FLIGHT, next_sync_after__lte=now)
            .exclude(external_id="")
            .aggregate(oldest=Min("next_sync_after"))["oldest"]
        )
        yield GaugeMetricFamily(
            "comfytrack_sweep_lag_seconds",
            "How long the most overdue in-flight run has been waiting past its next poll (0: none overdue).",
            value=(now - overdue).total_seconds() if overdue else 0.0,
        )

        breaker = GaugeMetricFamily(
            "comfytrack_credential_breaker_open",
            "1 while a credential's circuit breaker holds its runs back (blocked_until in the future).",
            labels=["credential", "provider_kind"],
        )
        failures = GaugeMetricFamily(
            "comfytrack_credential_consecutive_failures",
            "Consecutive failed sync batches per credential (0 once it answers again).",
            labels=["credential", "provider_kind"],
        )
        for pk, kind, blocked_until, count in Credential.objects.filter(
            Q(blocked_until__isnull=False) | Q(consecutive_failures__gt=0)
        ).values_list("pk", "provider__kind", "blocked_until", "consecutive_failures"):
            breaker.add_metric([str(pk), kind], 1.0 if blocked_until and blocked_until > now else 0.0)
            failures.add_metric([str(pk), kind], count)
        yield breaker
        yield failures

        unarchived = RunOutput.objects.filter(archived=None).exclude(provider_url="")
        archive = unarchived.aggregate(
            waiting=Count("id", filter=Q(next_archive_after__isnull=False)),
            retrying=Count("id", filter=Q(next_archive_after__isnull=False, archive_attempts__gt=0)),
            given_up=Count("id", filter=Q(next_archive_after__isnull=True)),
        )
        deliveries = WebhookDelivery.objects.filter(delivered=None).aggregate(
            pending=Count("id", filter=Q(failed=None)),
            retrying=Count("id", filter=Q(failed=None, attempt__gt=0)),
            failed=Count("id", filter=Q(failed__isnull=False)),
        )
        backlogs = {
            "archive_backlog": ("Outputs waiting to be archived (first try or a retry).", archive["waiting"]),
            "archive_retrying": ("Outputs waiting to be archived after a failed try.", archive["retrying"]),
            "archive_failed": (
                "Outputs the archive gave up on (only the provider's link is kept).",
                archive["given_up"],
            ),
            "webhook_backlog": ("Webhook deliveries not delivered yet (first try or a retry).", deliveries["pending"]),
            "webhook_retrying": ("Webhook deliveries waiting after a failed try.", deliveries["retrying"]),
            "webhook_failed": ("Webhook deliveries given up after their last retry.", deliveries["failed"]),
        }
        for name, (documentation, value) in backlogs.items():
            yield GaugeMetricFamily(f"comfytrack_{name}", documentation, value=value)


def render() -> bytes:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        for metric in _PROCESS_METRICS:
            registry.register(metric)
    registry.register(DatabaseCollector())
    return generate_latest(registry)


# -- access ------------------------------------------------------------------------------------


def allowed(request) -> bool:
    token = settings.COMFYTRACK_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip().encode(), token.encode()):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in _networks(tuple(settings.COMFYTRACK_METRICS_ALLOWED_NETWORKS)))


def _networks(entries: tuple[str, ...]) -> list:
    return [ipaddress.ip_network(entry, strict=False) for entry in entries]


def metrics_view(request) -> HttpResponse:
    if not allowed(request):
        return HttpResponse(
            "Metrics need the bearer token (COMFYTRACK_METRICS_TOKEN) or an allowed network.\n",
            status=403,
            content_type="text/plain",
        )
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)
