"""Freshness: from a provider finishing a run to comfytrack showing it, with a real q cluster (a script).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ct_bench_fresh python bench/freshness.py [--seconds 180]

The fake provider runs in its own process. N runs start at once and each finishes at a random moment
during the measurement; a real `manage.py qcluster` (the loops its migrations schedule) keeps them in
sync. The script watches the database the API reads (no cache in between) every 50 ms and records,
per run, when its status turned terminal. Prints p50/p95/p99/max of finish -> visible against the
targets (p50 <= 2.5 s, p99 <= poll interval + 2 s = 6.8 s at the default 4 s +-20%), the time from
the cluster's start to its first sweep (target <= 5 s), and the longest pause between two sweeps.
The measurement spans at least two schedule boundaries (loop handovers) when --seconds >= 150.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import RemoteFake, fresh_provider, setup_django  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def start_cluster(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_cluster(process: subprocess.Popen) -> None:
    import signal

    for signum, wait in ((signal.SIGINT, 15), (signal.SIGKILL, 5)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signum)
            process.wait(wait)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="how long runs keep finishing")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--kind", default="comfydeploy")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()

    where = setup_django()
    import httpx
    from django.db import connection
    from django.utils import timezone
    from django_q.models import OrmQ, Schedule

    from comfytrack import qcluster
    from runs.models import TERMINAL, LoopTurn, Run

    missing = set(qcluster.LOOPS.values()) - set(Schedule.objects.values_list("func", flat=True))
    if missing:
        raise SystemExit(f"the loops' schedules are missing ({', '.join(sorted(missing))}): migrate afresh")
    OrmQ.objects.all().delete()
    LoopTurn.objects.all().delete()

    with RemoteFake(args.latency_ms) as fake:
        org, provider, credential = fresh_provider(
            fake, args.kind, "bench-fresh", "Bench freshness", f"fresh-{args.kind}"
        )

        # Each run is running at once and finishes at a random moment after the cluster is up.
        warmup = 10.0
        offsets = [random.uniform(warmup, warmup + args.seconds) for _ in range(args.runs)]
        ids: list[str] = []
        finish_at: dict[str, float] = {}
        created_at = time.time()
        with httpx.Client(timeout=30) as http:
            for offset in offsets:
                body = {"kind": args.kind, "count": 1, "script": [[0.0, "running"], [offset, "succeeded"]]}
                sent = time.time()  # the fake counts the script from its own clock at this request
                (external_id,) = http.post(f"{fake.root}/_fake/runs", json=body).json()["ids"]
                ids.append(external_id)
                finish_at[external_id] = sent + offset
        now = timezone.now()
        Run.objects.bulk_create(
            [
                Run(organization=org, provider=provider, credential=credential, external_id=i, next_sync_after=now)
                for i in ids
            ]
        )
        pks = dict(Run.objects.filter(provider=provider).values_list("pk", "external_id"))
        print(
            f"database {connection.vendor} ({where}); kind {args.kind}; {args.runs} runs finishing at random "
            f"over {args.seconds:g} s; fake latency {args.latency_ms:g} ms; load average {os.getloadavg()[0]:.1f}"
        )

        env = {**os.environ, "COMFYTRACK_Q_NAME": f"bench-fresh-{os.getpid()}"}
        log = Path(os.environ.get("TMPDIR", "/tmp")) / "comfytrack-freshness-qcluster.log"
        cluster_started = time.time()
        cluster = start_cluster(env, log)
        first_sweep = None
        visible: dict[str, float] = {}
        sweep_marks: set[float] = set()
        try:
            deadline = created_at + warmup + args.seconds + 30
            while len(visible) < len(ids) and time.time() < deadline:
                seen_at = time.time()
                rows = Run.objects.filter(provider=provider).values_list("pk", "status", "last_synced")
                for pk, status, last_synced in rows:
                    if last_synced is not None:
                        sweep_marks.add(last_synced.timestamp())
                        if first_sweep is None:
                            first_sweep = seen_at
                    if status in TERMINAL and pks[pk] not in visible:
                        visible[pks[pk]] = seen_at
                time.sleep(0.05)
        finally:
            stop_cluster(cluster)

    lags = [visible[i] - finish_at[i] for i in ids if i in visible]
    missing_runs = len(ids) - len(lags)
    print(f"finish -> visible over {len(lags)} runs ({missing_runs} never seen finished):")
    print(
        f"  p50 {percentile(lags, 50):.2f} s   p95 {percentile(lags, 95):.2f} s   p99 {percentile(lags, 99):.2f} s   "
        f"max {max(lags):.2f} s   mean {statistics.fmean(lags):.2f} s"
    )
    p50_ok, p99_ok = percentile(lags, 50) <= 2.5, percentile(lags, 99) <= 6.8
    print(f"  target p50 <= 2.5 s: {'met' if p50_ok else 'MISSED'}; p99 <= 6.8 s: {'met' if p99_ok else 'MISSED'}")
    if first_sweep is not None:
        print(f"q cluster start -> first sweep: {first_sweep - cluster_started:.1f} s (target <= 5 s)")
    marks = sorted(m for m in sweep_marks if m >= (first_sweep or 0) - 60)
    gaps = [b - a for a, b in itertools.pairwise(marks)]
    if gaps:
        print(f"longest pause between two sweeps that wrote: {max(gaps):.1f} s over {len(marks)} sweep times")
    print(f"(q cluster log: {log})")
    Run.objects.filter(provider=provider).delete()
    provider.delete()


if __name__ == "__main__":
    main()
