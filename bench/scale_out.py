"""Scale-out: 1, 2 and 4 sweeper processes share the same runs (a script, not a test).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ct_bench python bench/scale_out.py [--n 20000] [--kind comfydeploy]
        [--latency-ms 20] [--counts 1,2,4]

PostgreSQL only (sweepers on several machines share leases through SELECT … FOR UPDATE SKIP LOCKED);
the database is created if missing and migrated. The fake provider runs in its own process with the
given latency per request. For each sweeper count, N runs that the provider has already finished are
created; that many sweeper processes (each `runs.sync.sync_due_runs` in a loop, as `manage.py
sync_runs` does) start together and sweep until no run is in flight. Prints runs/s per count, each
sweeper's share, and the duplicates found: status events recorded twice for a run, runs claimed more
than once (must both be 0), and runs not finished (lost: must be 0).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import RemoteFake, add_finished_runs, fresh_provider, setup_django  # noqa: E402

ORG_SLUG = "bench-scale-out"


def sweeper(provider_id: int, start_at: float) -> None:
    """One sweeper process: wait for the common start, sweep until no run of the provider is in flight."""
    setup_django()
    from runs.models import Run
    from runs.sync import sync_due_runs

    in_flight = Run.objects.filter(provider_id=provider_id).in_flight()
    time.sleep(max(0.0, start_at - time.time()))
    claimed = sweeps = 0
    while in_flight.exists():
        stats = sync_due_runs(archive=False)
        claimed, sweeps = claimed + stats.claimed, sweeps + 1
        if not stats.claimed:
            time.sleep(0.02)
    print(json.dumps({"claimed": claimed, "sweeps": sweeps, "ended": time.time()}), flush=True)


def prepare(fake, kind: str, n: int):
    from django.db import connection
    from django.utils import timezone

    from providers.fake import state as S
    from runs.models import Run

    org, provider, credential = fresh_provider(fake, kind, ORG_SLUG, "Bench scale-out", f"scale-{kind}")
    ids = add_finished_runs(fake, kind, n, S.SUCCEEDED)
    now = timezone.now()
    Run.objects.bulk_create(
        [
            Run(organization=org, provider=provider, credential=credential, external_id=i, next_sync_after=now)
            for i in ids
        ],
        batch_size=2000,
    )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE runs_run, runs_runevent, runs_runoutput")
    return provider


def duplicates(provider) -> tuple[int, int]:
    """(runs with a status event recorded twice, runs not finished)."""
    from django.db.models import Count

    from runs.models import Run, RunEvent

    twice = (
        RunEvent.objects.filter(run__provider=provider)
        .values("run_id", "to_status")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    return twice, Run.objects.filter(provider=provider).in_flight().count()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--sweeper":
        sweeper(int(sys.argv[2]), float(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="runs per sweeper count (default 20,000)")
    parser.add_argument("--kind", default="comfydeploy", help="comfydeploy (a GET per run) or comfyui (lists)")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--counts", default="1,2,4", help="sweeper process counts to compare")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit(
            "Set DATABASE_URL to a PostgreSQL database (e.g. postgres://postgres@127.0.0.1:5432/ct_bench)."
        )
    where = setup_django()
    cores = os.cpu_count()
    print(
        f"database postgresql ({where}); {args.n:,} runs per count; kind {args.kind}; "
        f"fake latency {args.latency_ms:g} ms; {cores} cores"
    )
    with RemoteFake(args.latency_ms) as fake:
        fake.set_faults(latency_ms=args.latency_ms)
        single = None
        for count in (int(c) for c in args.counts.split(",")):
            provider = prepare(fake, args.kind, args.n)
            start_at = time.time() + 3.0  # every sweeper has set Django up by then
            command = [sys.executable, __file__, "--sweeper", str(provider.pk), str(start_at)]
            children = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(count)]
            reports = []
            for child in children:
                out, _ = child.communicate(timeout=1800)
                if child.returncode != 0:
                    raise SystemExit(f"a sweeper failed (exit {child.returncode})")
                reports.append(json.loads(out.strip().splitlines()[-1]))
            elapsed = max(r["ended"] for r in reports) - start_at
            rate = args.n / elapsed
            single = single or rate
            claimed = sum(r["claimed"] for r in reports)
            twice, unfinished = duplicates(provider)
            shares = " / ".join(f"{r['claimed']:,}" for r in reports)
            print(
                f"{count} sweeper(s): {args.n:,} runs in {elapsed:.2f} s -> {rate:,.0f} runs/s "
                f"({rate / single:.2f}x one sweeper); claims per sweeper {shares}; "
                f"claims beyond one per run {claimed - args.n}; events recorded twice {twice}; unfinished {unfinished}"
            )
        from runs.models import Run

        Run.objects.filter(organization__slug=ORG_SLUG).delete()
        provider.delete()


if __name__ == "__main__":
    main()
