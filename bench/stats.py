"""The stats page and GET /api/v1/stats at scale, older code and current side by side (a script, not a test).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ct_bench_stats python bench/stats.py --runs 1000000

Seeds runs into one organization as bench/export.py does (COPY, costs on finished runs; 3 s apart, so
30 days hold ~864,000 of a million and 90 days all of them), then gives every run the provider's start
time and every finished one the provider's finish time (queue 1-8 s, run 2-92 s, microseconds), so the
percentiles have a population as they do in production. Then times, in rounds with the order rotated,
each page with the current runs/stats.py and with the one of each older revision (`git show`, loaded
beside the current one and put in place of the views' `compute_stats`): p50/p95 server time, the SQL
count, and the ratio of each older p95 to the current one. Checks that every revision computes the same
figures first.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import pages  # noqa: E402
from bench.harness import module_at, setup_django  # noqa: E402

PAGES = [
    ("stats page, 30 days", "/stats/?days=30"),
    ("stats page, 90 days", "/stats/?days=90"),
    ("GET /api/v1/stats?days=90", "/api/v1/stats?days=90"),
]


def add_provider_times() -> None:
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE runs_run SET started = created + ((id % 7) + 1) * interval '1 s' "
            "+ ((id * 31) % 1000000) * interval '1 microsecond', started_source = 'provider', "
            "finished = CASE WHEN status <> 'running' THEN created + ((id % 7) + 1) * interval '1 s' "
            "+ ((id * 7919) % 90000000) * interval '1 microsecond' + interval '2 s' END, "
            "finished_source = CASE WHEN status <> 'running' THEN 'provider' ELSE '' END "
            "WHERE started IS NULL"
        )
        updated = cursor.rowcount
    if updated:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE runs_run")
        print(f"provider times on {updated:,} runs in {time.perf_counter() - started:.1f} s", flush=True)


def older_module(rev: str) -> ModuleType:
    return module_at(rev, ("runs/stats.py",), f"stats_{rev}")


def figures(module: ModuleType, org, since, until) -> dict:
    from runs.models import Run

    stats = module.compute_stats(Run.objects.filter(organization=org), since, until)
    providers = [{k: v for k, v in dataclasses.asdict(p).items() if k != "id"} for p in stats.providers]
    return {
        "per_day": stats.per_day,
        "cost_per_day": stats.cost_per_day,
        "top_failures": sorted(stats.top_failures),
        "providers": providers,
    }


def nearest_rank(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(-(-fraction * len(ordered) // 1)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--old-rev", action="append", help="older revisions (default: 092591b and 25cf530)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="requests per page, variant and round")
    args = parser.parse_args()
    db = setup_django()
    pages.ORGS = 1
    _, providers = pages.ensure_orgs()
    pages.seed(providers, args.runs)
    add_provider_times()

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from accounts.models import ApiKey, Organization
    from runs import api, stats, views

    revisions = args.old_rev or ["092591b", "25cf530"]
    variants = {rev: older_module(rev).compute_stats for rev in revisions}
    variants["current"] = stats.compute_stats
    org = Organization.objects.get(slug="bench-0")
    print(f"database: {db}\n{args.runs:,} runs in one organization, with provider times")

    until = timezone.now()
    since = stats.window_from_days(30)
    expected = figures(stats, org, since, until)
    for rev in revisions:
        same = figures(sys.modules[f"stats_{rev}"], org, since, until) == expected
        print(f"  {rev}: the same figures as the current code over 30 days: {same}", flush=True)
        assert same, rev

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench"))
    session = client.session
    session["org"] = str(org.code)
    session.save()
    ApiKey.objects.filter(organization=org, name="bench-stats").delete()
    key = ApiKey.issue(org, "bench-stats")[1]
    samples: dict[tuple[str, str], list[float]] = {}
    queries: dict[tuple[str, str], int] = {}
    names = list(variants)
    for round_ in range(args.rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for label, url in PAGES:
            for name in order:
                views.compute_stats = api.compute_stats = variants[name]
                for _ in range(args.repeat):
                    with CaptureQueriesContext(connection) as captured:
                        started = time.perf_counter()
                        response = client.get(url, headers={"X-API-Key": key} if url.startswith("/api/") else {})
                        samples.setdefault((label, name), []).append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, (url, response.status_code)
                    queries[(label, name)] = len(captured.captured_queries)
            print(f"  round {round_ + 1}: {label} done", flush=True)
    views.compute_stats = api.compute_stats = stats.compute_stats

    print(f"\n{'page':28} {'code':9} {'p50 ms':>9} {'p95 ms':>9} {'SQL':>4} {'p95 / current':>14}")
    for label, _ in PAGES:
        current = nearest_rank(samples[(label, "current")], 0.95)
        for name in names:
            times = samples[(label, name)]
            p95 = nearest_rank(times, 0.95)
            print(
                f"{label:28} {name:9} {nearest_rank(times, 0.5):9.0f} {p95:9.0f} {queries[(label, name)]:4d} "
                f"{p95 / current:13.1f}x"
            )


if __name__ == "__main__":
    main()
