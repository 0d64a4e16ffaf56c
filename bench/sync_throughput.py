"""Sync engine throughput against the fake provider server in its own process (a script, not a test).

    python bench/sync_throughput.py [--n 10000] [--kind comfydeploy] [--latency-ms 20] [--baseline 500]

Database: DATABASE_URL if set (use a dedicated database, e.g. postgres://postgres@127.0.0.1:5432/ct_bench;
it is created if missing and its comfytrack tables are migrated), else a throwaway SQLite file.
Every run finishes at once on the fake; the engine sweeps until all are terminal. Prints runs/s, SQL
statements per run and peak RSS; then, timed apart as they run apart in production, the graph pass
(the graphs of tracked runs that the status answers left out: graphs/s) and the output archive; then a
naive baseline (one sequential GET per run, as provider SDKs
do) on a sample, and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import RemoteFake, add_finished_runs, cpu_seconds, fresh_provider, parent_pid, setup_django  # noqa: E402


class QueryCounter:
    """Counts statements on this thread's connection and, through `count_claims`, the sweep's claim thread's."""

    def __init__(self) -> None:
        import threading

        self.count = 0
        self.lock = threading.Lock()

    def __call__(self, execute, sql, params, many, context):
        with self.lock:
            self.count += 1
        return execute(sql, params, many, context)

    def count_claims(self):
        """A patch for runs.sync.claim_due_runs: claims made on another thread use that thread's connection."""
        import threading

        from django.db import connection

        from runs import sync

        real_claim = sync.claim_due_runs

        def counted_claim(limit, now=None):
            if threading.current_thread() is threading.main_thread():
                return real_claim(limit, now=now)  # already counted by the main connection's wrapper
            with connection.execute_wrapper(self):
                return real_claim(limit, now=now)

        sync.claim_due_runs = counted_claim


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="runs to sync (default 10,000)")
    parser.add_argument("--kind", default="comfydeploy", help="comfydeploy (per-run GET), comfyui/comfycloud (list)")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--baseline", type=int, default=500, help="runs polled by the naive baseline")
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="PostgreSQL: SET synchronous_commit TO off for this session (shows the share of WAL flushes)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the engine part, print the top entries")
    parser.add_argument(
        "--origin",
        default="tracked",
        choices=("tracked", "api"),
        help="tracked: registered by id (a list kind's graphs then come from the graph pass); api: submitted",
    )
    parser.add_argument("--skip-graphs", action="store_true", help="do not time the graph pass")
    parser.add_argument("--skip-archive", action="store_true", help="do not time the output archive")
    parser.add_argument(
        "--sender",
        default="aiohttp",
        help="the provider HTTP sender: aiohttp (production), httpx-trimmed or httpx (bench/http_sender.py)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the fake provider in this process (shares the GIL with the engine; default: its own process)",
    )
    args = parser.parse_args()

    where = setup_django()
    if args.sender != "aiohttp":
        from bench.http_sender import use_sender

        use_sender(args.sender)
    from django.db import connection
    from django.utils import timezone

    from providers.fake import FakeProviderServer
    from providers.fake import state as S
    from runs.demo import demo_workflow
    from runs.graphs import fetch_all_due_graphs
    from runs.models import Run, RunOutput
    from runs.sync import archive_all_due_outputs, sync_due_runs

    with FakeProviderServer() if args.in_process else RemoteFake(args.latency_ms) as fake:
        fake.state.record_requests = False
        fake.set_faults(latency_ms=args.latency_ms)
        org, provider, credential = fresh_provider(fake, args.kind, "bench", "Bench", f"bench-{args.kind}")

        # Each ran the demo's SDXL graph (9 nodes), which the provider serves for the graph pass.
        ids = add_finished_runs(fake, args.kind, args.n, S.SUCCEEDED, workflow=demo_workflow(random.Random(15)))
        now = timezone.now()
        Run.objects.bulk_create(
            [
                Run(
                    organization=org,
                    provider=provider,
                    credential=credential,
                    external_id=i,
                    next_sync_after=now,
                    origin=args.origin,
                )
                for i in ids
            ],
            batch_size=1000,
        )
        if connection.vendor == "postgresql":
            # What autovacuum does on a live install: without it, rows deleted by earlier runs of this
            # script bloat the tables and every write pays for it.
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE runs_run, runs_runoutput, runs_runevent")
        print(
            f"database {connection.vendor} ({where}); kind {args.kind}; {args.n:,} runs; "
            f"fake latency {args.latency_ms:g} ms; origin {args.origin}; sender {args.sender}"
        )

        if args.async_commit and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET synchronous_commit TO off")
            print("          (synchronous_commit off for this session)")

        # (a) the engine
        counter = QueryCounter()
        counter.count_claims()
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        cpu = CpuMeter(fake)
        started = time.perf_counter()
        sweeps = 0
        with connection.execute_wrapper(counter):
            while Run.objects.filter(provider=provider).in_flight().exists():
                # Status throughput; graphs and archive run in their own loop in production and are timed below.
                stats = sync_due_runs(archive=False)
                sweeps += 1
                if not stats.claimed:
                    time.sleep(0.05)
                if sweeps > 1000:
                    raise SystemExit("gave up: runs did not finish")
        elapsed = time.perf_counter() - started
        spent = cpu.spent()
        if profiler:
            profiler.disable()
        done = Run.objects.filter(provider=provider, status="succeeded").count()
        engine_rate = done / elapsed
        print(
            f"engine:   {done:,} runs terminal in {elapsed:.2f} s over {sweeps} sweep(s) -> {engine_rate:,.0f} runs/s"
        )
        print(
            f"          {counter.count / max(done, 1):.1f} SQL statements per run ({counter.count:,} in all); "
            f"peak RSS {peak_rss_mb():.0f} MB"
        )
        print(
            "          CPU per run: "
            + ", ".join(f"{name} {seconds / max(done, 1) * 1e6:.0f} µs" for name, seconds in spent)
        )

        # (a') the graph pass, separately (the archive loop's, in production)
        if not args.skip_graphs:
            due = Run.objects.filter(provider=provider, graph_due__isnull=False).count()
            graph_counter = QueryCounter()
            cpu = CpuMeter(fake)
            started = time.perf_counter()
            with connection.execute_wrapper(graph_counter):
                graphs = fetch_all_due_graphs()
            graph_elapsed = time.perf_counter() - started
            spent = cpu.spent()
            print(
                f"graphs:   {graphs:,} of {due:,} due graphs fetched in {graph_elapsed:.2f} s "
                f"-> {graphs / max(graph_elapsed, 1e-9):,.0f} graphs/s; {graph_counter.count:,} SQL statements"
            )
            if graphs:
                print(
                    "          CPU per graph: "
                    + ", ".join(f"{name} {seconds / graphs * 1e6:.0f} µs" for name, seconds in spent)
                )

        # (a'') the output archive, separately (its own scheduled loop in production)
        if not args.skip_archive:
            started = time.perf_counter()
            archived = archive_all_due_outputs()
            archive_elapsed = time.perf_counter() - started
            total_outputs = RunOutput.objects.filter(run__provider=provider).count()
            print(
                f"archive:  {archived:,} of {total_outputs:,} outputs archived in {archive_elapsed:.2f} s "
                f"-> {archived / max(archive_elapsed, 1e-9):,.0f} outputs/s"
            )

        # (b) naive baseline: one sequential GET per run
        sample = ids[: min(args.baseline, len(ids))]
        started = time.perf_counter()
        polled = naive_baseline(provider, credential, sample)
        base_elapsed = time.perf_counter() - started
        base_rate = polled / base_elapsed
        print(
            f"baseline: {polled:,} sequential GETs in {base_elapsed:.2f} s -> {base_rate:,.0f} runs/s "
            f"(HTTP + parse only, no database writes)"
        )
        print(f"ratio:    engine / baseline = {engine_rate / base_rate:.1f}x")
        Run.objects.filter(provider=provider).delete()
        provider.delete()

        if profiler:
            import pstats

            pstats.Stats(profiler).sort_stats(os.environ.get("BENCH_PROFILE_SORT", "cumulative")).print_stats(35)


class CpuMeter:
    """CPU spent from here on by the engine (this process, all threads), PostgreSQL and the fake provider's
    process: per run, a figure the machine's other work disturbs far less than runs/s.

    PostgreSQL counts this connection's backend plus every backend that ended meanwhile (the sweep's
    claim connection; their CPU moves to the postmaster's children's total when they exit)."""

    def __init__(self, fake) -> None:
        from django.db import connection

        self.cpu_seconds = cpu_seconds
        self.pids = {"engine": os.getpid()}
        self.postmaster = None
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.pids["PostgreSQL"] = backend = cursor.fetchone()[0]
            self.postmaster = parent_pid(backend)
        if isinstance(fake, RemoteFake):
            self.pids["fake provider"] = fake.process.pid
        self.start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.reaped = self._reaped()

    def _reaped(self) -> float:
        return 0.0 if self.postmaster is None else self.cpu_seconds(self.postmaster, of_ended_children=True)

    def spent(self) -> list[tuple[str, float]]:
        time.sleep(0.05)  # lets the postmaster reap a backend that just closed
        spent = {name: self.cpu_seconds(pid) - self.start[name] for name, pid in self.pids.items()}
        if "PostgreSQL" in spent:
            spent["PostgreSQL"] += self._reaped() - self.reaped
        return list(spent.items())


def naive_baseline(provider, credential, external_ids: list[str]) -> int:
    """What a provider SDK does: one blocking GET per run, one after the other."""
    import httpx

    secret = credential.plain_secret()
    base = provider.effective_base_url
    paths = {"comfydeploy": "run/{}", "comfyui": "history/{}"}
    if provider.kind in paths:
        headers = {"Authorization": f"Bearer {secret['token']}"} if provider.kind == "comfydeploy" else {}
        with httpx.Client(base_url=base, headers=headers, timeout=15) as http:
            for external_id in external_ids:
                response = http.get(paths[provider.kind].format(external_id))
                response.raise_for_status()
                response.json()
        return len(external_ids)

    # Other kinds: the kind's own client, awaited one run at a time (same parsing as the engine).
    client = provider.client(credential)

    async def sequential() -> None:
        async with client:
            for external_id in external_ids:
                await client.fetch(external_id)

    asyncio.run(sequential())
    return len(external_ids)


if __name__ == "__main__":
    main()
