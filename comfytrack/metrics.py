"""The Prometheus counters and histograms that the code increments where the thing happens (provider
answers and errors, sweep duration, API responses); prometheus-client, docs/deploy.md lists what to
alert on. /metrics serves them with gauges read from the database (comfytrack.metrics_endpoint).

Under gunicorn and the q cluster several processes count: with `PROMETHEUS_MULTIPROC_DIR` set
(scripts/serve.py sets it), each writes its own file there and a scrape adds them up. This module
imports no model, so the engine can count without depending on the apps the gauges read.

Labels are provider kinds and credential ids, never names or URLs (organization data, unbounded).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from prometheus_client import Counter, Histogram

from providers.clients.base import RunSnapshot

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

PROCESS_METRICS = (PROVIDER_ANSWERS, PROVIDER_ERRORS, SWEEP_SECONDS, API_REQUESTS)


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
    """Count one batch's answers: a snapshot is ok, a ProviderError (or no answer) is an error.

    Tallied here first, then added once per label set: a child lookup and an increment (each under
    a lock) per run were a visible share of a list-served batch's CPU."""
    answers: collections.Counter[tuple[str, str]] = collections.Counter()
    errors: collections.Counter[tuple[str, str]] = collections.Counter()
    for run in runs:
        kind = run.provider.kind
        result = results.get(run.id)
        if isinstance(result, RunSnapshot):
            answers[kind, "ok"] += 1
        else:
            answers[kind, "error"] += 1
            errors[kind, error_cause(result) if result is not None else "no_answer"] += 1
    for labels, n in answers.items():
        PROVIDER_ANSWERS.labels(*labels).inc(n)
    for labels, n in errors.items():
        PROVIDER_ERRORS.labels(*labels).inc(n)


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
