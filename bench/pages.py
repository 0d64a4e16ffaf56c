"""Dashboard page timings at scale (a script, not a test).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ct_bench_pages python bench/pages.py --runs 10000 [--runs 1000000]

Seeds runs across 3 organizations (PostgreSQL: COPY; otherwise bulk_create), one output per 5 runs,
then requests the runs page (first page, a filtered page, a deep cursor page) and the gallery through
Django's test client as a member of the first organization. Prints p50/p95 server time, the SQL count and
the median CPU time of this process per request, per page; with --profile, then where each page's time
goes (cProfile). Each --runs value reseeds up to that total (runs are added, never deleted).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import setup_django  # noqa: E402

STATUSES = ["succeeded"] * 7 + ["failed", "running", "cancelled"]
PROMPTS = ["a red fox", "a lighthouse at dusk", "neon city rain", "a cozy library", "portrait of an astronaut"]
ORGS = 3


def ensure_orgs():
    from django.contrib.auth import get_user_model

    from accounts.models import Membership, Organization
    from providers.models import Credential, Provider

    user, _ = get_user_model().objects.get_or_create(username="bench")
    providers = []
    for i in range(ORGS):
        org, _ = Organization.objects.get_or_create(slug=f"bench-{i}", defaults={"name": f"Bench {i}"})
        Membership.objects.get_or_create(organization=org, user=user, defaults={"role": "owner"})
        provider, created = Provider.objects.get_or_create(
            organization=org, name="Deploy", defaults={"kind": "comfyui", "base_url": "http://127.0.0.1:9"}
        )
        if created:
            credential = Credential(provider=provider, name="default")
            credential.set_secret({})
            credential.save()
        providers.append(provider)
    return user, providers


def seed(providers, total: int) -> None:
    from django.db import connection

    from runs.models import Run

    have = Run.objects.count()
    if have >= total:
        return
    started = time.perf_counter()
    rng = random.Random(have)
    now = datetime.now(UTC)
    rows, outputs = [], []
    for i in range(have, total):
        provider = providers[i % ORGS]
        created = now - timedelta(seconds=(total - i) * 3)
        status = rng.choice(STATUSES)
        prompt = rng.choice(PROMPTS)
        code = uuid.uuid4()
        error = {"message": "CUDA out of memory", "node_id": "3", "node_type": "KSampler"} if status == "failed" else {}
        # A finished run has a cost (insights.costing), half reported on an A100, half estimated; in flight, none.
        cost, cost_source, gpu = None, "", ""
        if status != "running":
            cost = Decimal(rng.randint(100, 90_000)) / 1_000_000
            cost_source, gpu = ("reported", "A100") if i % 2 else ("estimated", "")
        rows.append(
            (
                code,
                provider.organization_id,
                provider.pk,
                f"ext-{i}",
                status,
                json.dumps(error),
                created,
                f"ext-{i} {prompt} {i % 9999}",
                cost,
                cost_source,
                gpu,
            )
        )
        if i % 5 == 0:
            outputs.append((uuid.uuid4(), code, f"k{i}", f"ComfyUI_{i:07d}_.png", created))
    if connection.vendor == "postgresql":
        _copy_postgres(rows, outputs)
    else:
        _bulk_create(rows, outputs)
    print(
        f"seeded {total - have:,} runs (+{len(outputs):,} outputs) in {time.perf_counter() - started:.1f} s", flush=True
    )


def _copy_postgres(rows, outputs) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        raw = cursor.cursor
        columns = (
            "code, organization_id, provider_id, external_id, status, provider_status, live_status, workflow, inputs, "
            "error, origin, created, sync_failures, last_sync_error, n_outputs, search_text, "
            # Columns without a database default: COPY must give them a value.
            "created_source, queued_source, started_source, finished_source, workflow_fingerprint, gpu, cost_source, "
            "cost, graph_attempts"
        )
        with raw.copy(f"COPY runs_run ({columns}) FROM STDIN") as copy:
            for code, org_id, provider_id, ext, status, error, created, text, cost, cost_source, gpu in rows:
                copy.write_row(
                    (
                        code,
                        org_id,
                        provider_id,
                        ext,
                        status,
                        status,
                        "",
                        "{}",
                        "{}",
                        error,
                        "api",
                        created,
                        0,
                        "",
                        1 if ext[-1] in "05" else 0,
                        text,
                        "provider",
                        "",
                        "",
                        "",
                        "",
                        gpu,
                        cost_source,
                        cost,
                        0,
                    )
                )
        cursor.execute(
            "CREATE TEMP TABLE bench_out (code uuid, run_code uuid, key text, filename text, created timestamptz)"
        )
        with raw.copy("COPY bench_out FROM STDIN") as copy:
            for row in outputs:
                copy.write_row(row)
        cursor.execute(
            "INSERT INTO runs_runoutput (code, run_id, organization_id, key, node_id, kind, filename, content_type, "
            "provider_url, file, thumbnail, sha256, archive_error, archive_attempts, content_verified, created) "
            "SELECT o.code, r.id, r.organization_id, o.key, '9', 'image', o.filename, 'image/png', '', '', '', '', "
            "'', 0, false, o.created "
            "FROM bench_out o JOIN runs_run r ON r.code = o.run_code"
        )
        cursor.execute("DROP TABLE bench_out")
        cursor.execute("ANALYZE runs_run; ANALYZE runs_runoutput")


def _bulk_create(rows, outputs) -> None:
    from runs.models import Run, RunOutput

    for start in range(0, len(rows), 5000):
        chunk = rows[start : start + 5000]
        Run.objects.bulk_create(
            Run(
                code=c,
                organization_id=o,
                provider_id=p,
                external_id=e,
                status=s,
                error=json.loads(err),
                created=cr,
                search_text=t,
                origin="api",
                cost=cost,
                cost_source=source,
                gpu=gpu,
            )
            for c, o, p, e, s, err, cr, t, cost, source, gpu in chunk
        )
    ids = {
        code: (pk, org)
        for code, pk, org in Run.objects.filter(code__in=[o[1] for o in outputs]).values_list(
            "code", "id", "organization_id"
        )
    }
    RunOutput.objects.bulk_create(
        (
            RunOutput(
                code=c, run_id=ids[rc][0], organization_id=ids[rc][1], key=k, kind="image", filename=f, created=cr
            )
            for c, rc, k, f, cr in outputs
        ),
        batch_size=5000,
    )


def measure(client, url: str, repeat: int) -> tuple[float, float, int, float]:
    """(p50 ms, p95 ms, SQL statements, median CPU ms) of `repeat` requests for `url`. The CPU is this
    process's (the view, the templates, the database driver; not PostgreSQL's): steadier than the wall
    clock on a shared machine."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times, cpu, queries = [], [], 0
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as captured:
            started, started_cpu = time.perf_counter(), time.process_time()
            response = client.get(url)
            cpu.append((time.process_time() - started_cpu) * 1000)
            times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
        queries = len(captured.captured_queries)
    times.sort()
    return statistics.median(times), times[max(int(len(times) * 0.95) - 1, 0)], queries, statistics.median(cpu)


def profile(client, url: str, repeat: int, top: int = 25) -> None:
    """The functions that cost most over `repeat` requests for `url` (cProfile, by cumulative time)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeat):
        client.get(url)
    profiler.disable()
    print(f"\n--- profile of {repeat} requests for {url}")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(top)


def pages(user, providers, repeat: int, *, profiled: bool = False) -> list[tuple[str, float, float, int, float]]:
    from django.test import Client

    from runs.models import Run
    from runs.queries import encode_cursor

    client = Client()
    client.force_login(user)
    org = providers[0].organization
    session = client.session
    session["org"] = str(org.code)
    session.save()
    n = Run.objects.filter(organization=org).count()
    deep = Run.objects.filter(organization=org).order_by("-created", "-code")[n // 2 : n // 2 + 1].get()
    urls = [
        ("runs: first page", "/runs/"),
        ("runs: status=failed + search", "/runs/?status=failed&q=fox"),
        ("runs: provider + date range", f"/runs/?provider={providers[0].code}&created_after=2000-01-01"),
        ("runs: deep cursor (middle)", f"/runs/?cursor={encode_cursor(deep)}"),
        ("gallery: first page", "/gallery/"),
    ]
    client.get("/runs/")  # warm up
    results = [(label, *measure(client, url, repeat)) for label, url in urls]
    if profiled:
        for _, url in urls:
            profile(client, url, repeat)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, action="append", help="total runs to measure at (repeatable)")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--profile", action="store_true", help="then profile each page (cProfile) and print")
    args = parser.parse_args()
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    db = setup_django()
    user, providers = ensure_orgs()
    print(f"database: {db}")
    for total in sorted(args.runs or [10_000]):
        seed(providers, total)
        print(f"\n{total:,} runs ({ORGS} organizations)       p50 ms   p95 ms   SQL   CPU ms")
        for label, p50, p95, queries, cpu in pages(user, providers, args.repeat, profiled=args.profile):
            print(f"  {label:32} {p50:7.1f}  {p95:7.1f}  {queries:4d}  {cpu:7.1f}")


if __name__ == "__main__":
    main()
