"""Streamed export of the runs list at scale (a script, not a test).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ct_bench_export python bench/export.py --runs 1000000

Seeds runs into one organization (PostgreSQL: COPY, as bench/pages.py does), then, each in a fresh
process so its peak memory is its own, downloads every run through GET /api/v1/runs/export (Django's
test client, the streamed body read chunk by chunk and dropped) as CSV and as JSON Lines, and, side by
side, the same rows built in memory first (what a non-streamed export would do). Prints rows/s and peak
RSS (VmHWM) above the process's footprint before the request.

Then, in this process, the pages that add up the cost of every run the filters select: the runs list's
cost total (`/runs/cost/`, loaded after the list) with and without filters, and the stats page (cost per
day and provider over 30 days): p50/p95 server time, the SQL count and CPU per request, as bench/pages.py
prints them. `--pages-only` times only those pages on the runs already seeded: run it from two checkouts (a git
worktree of the older code) one after the other to compare them on one database.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import pages  # noqa: E402
from bench.harness import setup_django  # noqa: E402

MODES = ("csv", "jsonl", "csv-in-memory")


def _peak_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child of
    the seeding parent would start out with the parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(mode: str) -> dict:
    """One export in this process: rows, seconds, peak RSS before and after."""
    from django.http import StreamingHttpResponse
    from django.test import Client

    from accounts.models import ApiKey, Organization
    from runs import export
    from runs.models import Run

    org = Organization.objects.get(slug="bench-0")
    ApiKey.objects.filter(organization=org, name="bench-export").delete()
    key = ApiKey.issue(org, "bench-export")[1]
    client = Client()
    before = _peak_mb()
    started = time.perf_counter()
    if mode == "csv-in-memory":
        records = list(export.records(Run.objects.filter(organization=org), org.pk))
        size = len("".join(export.csv_chunks(iter(records))))
        lines = len(records) + 1
    else:
        response = client.get(f"/api/v1/runs/export?format={mode}", headers={"X-API-Key": key})
        assert response.status_code == 200, response.status_code
        assert isinstance(response, StreamingHttpResponse)
        size = lines = 0
        for chunk in response.streaming_content:
            size += len(chunk)
            lines += chunk.count(b"\n")
        response.close()
    seconds = time.perf_counter() - started
    rows = lines - (1 if mode.startswith("csv") else 0)
    return {"mode": mode, "rows": rows, "seconds": seconds, "bytes": size, "before_mb": before, "peak_mb": _peak_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5, help="requests per cost page")
    parser.add_argument("--measure", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument(
        "--pages-only",
        action="store_true",
        help="only time the cost pages on the runs already seeded (to compare two checkouts on one database)",
    )
    args = parser.parse_args()
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    if args.measure:
        # The parent migrated and seeded: this process only sets Django up, so its peak memory is the export's.
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comfytrack.test_settings")
        import django

        django.setup()
        print(json.dumps(measure(args.measure)))
        return
    db = setup_django()
    if args.pages_only:
        print(f"database: {db}, code: {ROOT}")
        print_cost_pages(args.runs, args.repeat)
        return
    pages.ORGS = 1  # every run in one organization: the export reads them all
    _, providers = pages.ensure_orgs()
    pages.seed(providers, args.runs)
    print(f"database: {db}\n{args.runs:,} runs in one organization")
    print(f"  {'mode':15} {'rows':>10} {'rows/s':>9} {'MB out':>8} {'RSS before':>11} {'peak RSS':>9} {'growth':>8}")
    results = {}
    for mode in MODES:
        command = [sys.executable, __file__, "--measure", mode, "--runs", str(args.runs)]
        out = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ.copy())
        r = results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        growth = r["peak_mb"] - r["before_mb"]
        print(
            f"  {mode:15} {r['rows']:>10,} {r['rows'] / r['seconds']:>9,.0f} {r['bytes'] / 1e6:>8.1f} "
            f"{r['before_mb']:>9.0f}MB {r['peak_mb']:>7.0f}MB {growth:>6.0f}MB",
            flush=True,
        )
    streamed, held = results["csv"], results["csv-in-memory"]
    ratio = (held["peak_mb"] - held["before_mb"]) / max(streamed["peak_mb"] - streamed["before_mb"], 1)
    print(f"memory growth, in-memory / streamed CSV: {ratio:.1f}x")
    print_cost_pages(args.runs, args.repeat)


def print_cost_pages(runs: int, repeat: int) -> None:
    print(f"\ncost over {runs:,} runs (one organization)   p50 ms   p95 ms   SQL   CPU ms")
    for label, p50, p95, queries, cpu in cost_pages(repeat):
        print(f"  {label:36} {p50:7.1f}  {p95:7.1f}  {queries:4d}  {cpu:7.1f}", flush=True)


def cost_pages(repeat: int) -> list[tuple[str, float, float, int, float]]:
    """The runs list's cost total and the stats page, as the bench organization's owner."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from accounts.models import Organization

    org = Organization.objects.get(slug="bench-0")
    client = Client()
    client.force_login(get_user_model().objects.get(username="bench"))
    session = client.session
    session["org"] = str(org.code)
    session.save()
    week_ago = (datetime.now(UTC) - timedelta(days=7)).date().isoformat()
    urls = [
        ("runs: cost total, no filter", "/runs/cost/"),
        ("runs: cost total, status=failed", "/runs/cost/?status=failed"),
        ("runs: cost total, last 7 days", f"/runs/cost/?created_after={week_ago}"),
        ("runs: cost total, search 'fox'", "/runs/cost/?q=fox"),
        ("stats: 30 days (cost per day)", "/stats/?days=30"),
    ]
    client.get("/runs/cost/")  # warm up
    return [(label, *pages.measure(client, url, repeat)) for label, url in urls]


if __name__ == "__main__":
    main()
