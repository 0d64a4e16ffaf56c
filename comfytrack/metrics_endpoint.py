"""/metrics: Prometheus text for a bearer token or an allowed network (comfytrack.health routes it).

Two sources:
- the process counters and histograms of comfytrack.metrics;
- gauges read from the database at scrape time (runs in flight, sweep lag, breakers, graph, archive
  and webhook backlogs): the truth of the whole deployment, whichever machine or process holds the work.
"""

from __future__ import annotations

import hmac
import ipaddress
import os

from django.conf import settings
from django.db.models import Count, Min, Q
from django.http import HttpResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from comfytrack.metrics import PROCESS_METRICS
from providers.models import Credential
from runs.models import IN_FLIGHT, Run, RunOutput
from webhooks.models import WebhookDelivery

# -- read from the database at scrape time ------------------------------------------------------


class DatabaseCollector(Collector):
    def collect(self):
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
        # Only runs whose graph is still due: the partial index runs_run_graph_due holds exactly those.
        graphs = Run.objects.filter(graph_due__isnull=False).aggregate(
            waiting=Count("id"), retrying=Count("id", filter=Q(graph_attempts__gt=0))
        )
        deliveries = WebhookDelivery.objects.filter(delivered=None).aggregate(
            pending=Count("id", filter=Q(failed=None)),
            retrying=Count("id", filter=Q(failed=None, attempt__gt=0)),
            failed=Count("id", filter=Q(failed__isnull=False)),
        )
        backlogs = {
            "graph_backlog": (
                "Finished tracked runs whose graph is still to be asked for (runs.graphs).",
                graphs["waiting"],
            ),
            "graph_retrying": (
                "Tracked runs whose graph is asked for again after a failed request.",
                graphs["retrying"],
            ),
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
        for metric in PROCESS_METRICS:
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
