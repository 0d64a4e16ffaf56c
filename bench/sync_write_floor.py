"""PostgreSQL's share of a finished run: the writes the sweep makes, without HTTP or the engine's logic.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ct_bench python bench/sync_write_floor.py [--n 10000]

For N running runs, batch by batch (1,000, as the sweep does) and with the sweep's own bulk writers
(runs.bulk): the status UPDATE (which also grows the output counter, as the sweep's does), one RunEvent,
one RunOutput and the lease (a separate UPDATE, written before the provider is asked). Prints the
PostgreSQL backend's CPU per run (read from /proc, so PostgreSQL must run on this machine) for the full set
and for cumulative subsets, which bounds what any sweep design can reach on these cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import cpu_seconds, setup_django  # noqa: E402

STEPS = ("status", "event", "output", "lease")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args()
    setup_django()
    from django.db import connection, transaction
    from django.utils import timezone

    from accounts.models import Organization
    from providers.models import Provider
    from runs.bulk import insert_rows, update_where
    from runs.models import Run, RunEvent, RunOutput

    if connection.vendor != "postgresql":
        raise SystemExit("needs PostgreSQL (DATABASE_URL=postgres://…)")
    org, _ = Organization.objects.get_or_create(slug="bench-floor", defaults={"name": "Bench floor"})
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    print(f"{args.n:,} runs per measurement, batches of 1,000; PostgreSQL CPU per finished run:")
    for upto in range(1, len(STEPS) + 1):
        steps = STEPS[:upto]
        Run.objects.filter(organization=org).delete()
        Provider.objects.filter(organization=org).delete()
        provider = Provider.objects.create(organization=org, name="floor", kind="comfyui", base_url="http://192.0.2.1")
        now = timezone.now()
        Run.objects.bulk_create(
            [Run(organization=org, provider=provider, external_id=f"f{i}", status="running") for i in range(args.n)],
            batch_size=2000,
        )
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE runs_run, runs_runoutput, runs_runevent")
        pks = list(Run.objects.filter(organization=org).values_list("pk", flat=True))
        cpu, started = cpu_seconds(backend), time.perf_counter()
        for start in range(0, len(pks), 1000):
            batch = pks[start : start + 1000]
            if "lease" in steps:  # its own transaction, as the sweep's claim
                update_where(Run, ["sync_locked_until"], [(pk, "running", [now]) for pk in batch], guard="status")
            with transaction.atomic():
                names = ["status", "finished", "progress", "next_sync_after", "sync_locked_until", "last_synced"]
                values = ["succeeded", now, 1.0, None, None, now]
                if "output" in steps:
                    names, values = [*names, "n_outputs"], [*values, 1]
                rows = [(pk, "running", values) for pk in batch]
                update_where(Run, names, rows, guard="status", increments=("n_outputs",))
                if "event" in steps:
                    event = {"created": now, "source": "poll", "from_status": "running", "to_status": "succeeded"}
                    insert_rows(RunEvent, [{"run_id": pk, **event} for pk in batch])
                if "output" in steps:
                    output = {"organization_id": org.pk, "key": "9:a.png", "kind": "image", "filename": "a.png"}
                    insert_rows(RunOutput, [{"run_id": pk, **output} for pk in batch], skip_conflicts=True)
        spent, elapsed = cpu_seconds(backend) - cpu, time.perf_counter() - started
        print(
            f"  {' + '.join(steps):42} {spent / args.n * 1e6:6.0f} µs"
            f"  (-> at most {args.n / spent if spent else float('inf'):8,.0f} runs/s per core; wall {elapsed:.2f} s)"
        )
    Run.objects.filter(organization=org).delete()
    Provider.objects.filter(organization=org).delete()


if __name__ == "__main__":
    main()
