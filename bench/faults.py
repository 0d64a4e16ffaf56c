"""The fault run: comfytrack's engine while its own processes, the database, the provider and the disk fail.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ct_bench_faults python bench/faults.py [--runs 2000]

PostgreSQL only (backends are terminated). The fake provider runs in its own process. Every scenario
tracks fresh runs that finish on the fake a few seconds after they start, with a webhook endpoint on
the organization, and checks afterwards: every run terminal, status events never duplicated, every
status event with exactly one webhook message (none lost, none twice), no output twice. Scenarios:

1. kill -9 of a q cluster mid-sweep, then a new q cluster: how long until it sweeps, and until the
   dead cluster's leased runs are synced (bounds: 5 s and 30 s).
2. kill -9 of a `manage.py sync_runs` mid-sweep, then another: its leased runs are synced within 30 s.
3. The sweeper's PostgreSQL backends terminated three times mid-sweep: the loop goes on (same
   process), and each time it writes again within seconds.
4. A provider outage (every request answers 502 for 20 s): how long after it ends every run that
   finished meanwhile is shown finished.
5. A full disk (a storage with 48 KB of room, about a fifth of what the outputs need): every failure
   says "No space left on device", no temporary file and no orphan or partial file is left; once
   space is freed and the archive is retried (the run page's button), every output is archived with
   a matching sha256.

Prints one line per scenario and a verdict. The machine is shared: recovery times carry its noise.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import RemoteFake, setup_django  # noqa: E402

RUN_SECONDS = 4.0  # each run is running this long on the fake, then succeeds
# The fake's outputs are small PNGs (~170 bytes, ~100 for a thumbnail): room for about a fifth of scenario 5's.
DISK_ROOM = 48 * 1024


@dataclass
class Outcome:
    name: str
    runs: int = 0
    events: int = 0
    duplicate_events: int = 0
    webhook_messages: int = 0
    lost_messages: int = 0
    duplicate_messages: int = 0
    duplicate_outputs: int = 0
    not_terminal: int = 0
    recoveries: dict[str, tuple[float | None, float]] = field(default_factory=dict)  # name -> (seconds, bound)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        counts = (self.duplicate_events, self.lost_messages, self.duplicate_messages, self.duplicate_outputs)
        in_bounds = all(s is not None and s <= bound for s, bound in self.recoveries.values())
        return not any(counts) and not self.not_terminal and in_bounds

    def line(self) -> str:
        recoveries = ", ".join(
            f"{name} {'never' if s is None else f'{s:.1f} s'} (bound {bound:g} s)"
            for name, (s, bound) in self.recoveries.items()
        )
        return (
            f"{self.name}: {self.runs} runs, {self.events} status events ({self.duplicate_events} duplicate), "
            f"{self.webhook_messages} webhook messages ({self.lost_messages} lost, {self.duplicate_messages} "
            f"duplicate), {self.duplicate_outputs} duplicate outputs, {self.not_terminal} not finished; "
            f"{recoveries or 'no recovery measured'} -> {'OK' if self.ok else 'FAILED'}"
            + "".join(f"\n    {note}" for note in self.notes)
        )


class Bench:
    def __init__(self, fake: RemoteFake, runs: int) -> None:
        from accounts.models import Organization
        from providers.models import Credential, Provider
        from webhooks.models import WebhookEndpoint

        self.fake, self.n = fake, runs
        self.org, _ = Organization.objects.get_or_create(slug="bench-faults", defaults={"name": "Bench faults"})
        self.provider = Provider.objects.create(
            organization=self.org,
            name=f"faults-{time.time_ns()}",
            kind="comfydeploy",
            base_url=fake.base_url("comfydeploy"),
        )
        self.credential = Credential(provider=self.provider, name="default")
        self.credential.set_secret(fake.secret("comfydeploy"))
        self.credential.save()
        if not WebhookEndpoint.objects.filter(organization=self.org).exists():
            endpoint = WebhookEndpoint(organization=self.org, url="https://hooks.example.com/bench")
            endpoint.rotate_secret()
            endpoint.save()
        self.children: list[subprocess.Popen] = []

    # -- runs ------------------------------------------------------------------------------------

    def add_runs(self, n: int | None = None, run_seconds: float = RUN_SECONDS, n_outputs: int = 1) -> list[int]:
        import httpx
        from django.utils import timezone

        from runs.models import Run

        n = n or self.n
        body = {
            "kind": "comfydeploy",
            "count": n,
            "script": [[0.0, "running"], [run_seconds, "succeeded"]],
            "n_outputs": n_outputs,
        }
        ids = httpx.post(f"{self.fake.root}/_fake/runs", json=body, timeout=60).json()["ids"]
        now = timezone.now()
        created = Run.objects.bulk_create(
            [
                Run(
                    organization=self.org,
                    provider=self.provider,
                    credential=self.credential,
                    external_id=i,
                    next_sync_after=now,
                )
                for i in ids
            ],
            batch_size=1000,
        )
        return [run.pk for run in created]

    def check(self, outcome: Outcome, pks: list[int]) -> Outcome:
        from django.db.models import Count

        from runs.models import TERMINAL, Run, RunEvent, RunOutput
        from webhooks.models import STATUS_EVENTS, WebhookDelivery

        outcome.runs = len(pks)
        outcome.not_terminal = Run.objects.filter(pk__in=pks).exclude(status__in=TERMINAL).count()
        events = list(RunEvent.objects.filter(run_id__in=pks).values_list("run__code", "to_status"))
        outcome.events = len(events)
        outcome.duplicate_events = sum(n - 1 for n in Counter(events).values() if n > 1)
        codes = {str(code) for code, _ in events}
        messages = Counter(
            (run_id, event_type)
            for run_id, event_type in WebhookDelivery.objects.filter(
                endpoint__organization=self.org, event_type__in=STATUS_EVENTS.values()
            ).values_list("payload__data__run__id", "event_type")
            if run_id in codes
        )
        outcome.webhook_messages = sum(messages.values())
        expected = Counter((str(code), STATUS_EVENTS[status]) for code, status in events if status in STATUS_EVENTS)
        outcome.lost_messages = sum((expected - messages).values())
        repeated = sum(n - 1 for n in messages.values() if n > 1)
        outcome.duplicate_messages = repeated + sum((messages - expected).values())
        outcome.duplicate_outputs = (
            RunOutput.objects.filter(run_id__in=pks)
            .values("run_id", "key")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
            .count()
        )
        return outcome

    def wait_terminal(self, pks: list[int], timeout: float) -> float | None:
        from runs.models import TERMINAL, Run

        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if not Run.objects.filter(pk__in=pks).exclude(status__in=TERMINAL).exists():
                return time.monotonic() - started
            time.sleep(0.2)
        return None

    # -- processes -------------------------------------------------------------------------------

    def start(self, *command: str, name: str) -> subprocess.Popen:
        log = Path(tempfile.gettempdir()) / f"comfytrack-faults-{name}.log"
        env = {**os.environ, "COMFYTRACK_Q_NAME": f"bench-faults-{os.getpid()}"}
        process = subprocess.Popen(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.children.append(process)
        return process

    def stop(self, process: subprocess.Popen, signum: int = signal.SIGTERM, wait: float = 20) -> int | None:
        try:
            os.killpg(process.pid, signum)
            return process.wait(wait)
        except ProcessLookupError:
            return process.poll()
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
            return None

    def stop_all(self) -> None:
        for process in self.children:
            if process.poll() is None:
                self.stop(process, signal.SIGKILL, 5)
        # A process killed with -9 leaves its database sessions until PostgreSQL notices.
        self.terminate_other_backends()

    def terminate_other_backends(self) -> int:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
            return cursor.fetchone()[0]


# -- scenarios -----------------------------------------------------------------------------------------


def leased(pks: list[int]) -> list[int]:
    from django.utils import timezone

    from runs.models import Run

    return list(Run.objects.filter(pk__in=pks, sync_locked_until__gt=timezone.now()).values_list("pk", flat=True))


def synced_after(pks: list[int], moment, timeout: float) -> float | None:
    """Seconds until every run in `pks` was synced after `moment` (or finished)."""
    from django.db.models import Q

    from runs.models import TERMINAL, Run

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        behind = Run.objects.filter(pk__in=pks).exclude(Q(last_synced__gt=moment) | Q(status__in=TERMINAL))
        if not behind.exists():
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def turn_taken_after(moment, timeout: float) -> float | None:
    """Seconds until a sync loop started after `moment` holds the sync turn (it sweeps from then on)."""
    from runs.models import LoopTurn

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        turn = LoopTurn.objects.filter(name="sync", beat__gt=moment).exclude(holder__startswith="start:").first()
        if turn is not None:
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def leases_of(pks: list[int]) -> dict[int, object]:
    """The runs of `pks` under a lease now, with the lease's end."""
    from django.utils import timezone

    from runs.models import Run

    held = Run.objects.filter(pk__in=pks, sync_locked_until__gt=timezone.now())
    return dict(held.values_list("pk", "sync_locked_until"))


def picked_up(leases: dict[int, object], moment, timeout: float) -> float | None:
    """Seconds until another sweeper has taken every one of these runs: leased it anew, or synced it."""
    from runs.models import Run

    started = time.monotonic()
    waiting = dict(leases)
    while time.monotonic() - started < timeout:
        rows = Run.objects.filter(pk__in=list(waiting)).values_list("pk", "sync_locked_until", "last_synced")
        for pk, lease, last_synced in rows:
            if (last_synced and last_synced > moment) or (lease and lease != waiting[pk]):
                del waiting[pk]
        if not waiting:
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def wait_for_leases(pks: list[int], timeout: float = 60) -> list[int]:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if held := leased(pks):
            return held
        time.sleep(0.02)
    return []


def kill_q_cluster(bench: Bench) -> Outcome:
    from django.utils import timezone

    from runs.models import LoopTurn

    outcome = Outcome("1. kill -9 of the q cluster mid-sweep")
    LoopTurn.objects.all().delete()
    bench.fake.set_faults(latency_ms=300)  # sweeps long enough to be caught in the middle
    pks = bench.add_runs()
    cluster = bench.start("qcluster", name="qcluster-1")
    wait_for_leases(pks)
    bench.stop(cluster, signal.SIGKILL, 5)
    killed_at = timezone.now()
    held = leases_of(pks)
    outcome.notes.append(f"{len(held)} run(s) were leased by the killed cluster")
    bench.terminate_other_backends()
    bench.fake.set_faults(latency_ms=20)
    restarted = time.monotonic()
    second = bench.start("qcluster", name="qcluster-2")
    # The restarted cluster's sync loop holds the turn (and beats) from its first pass on; the runs the
    # dead one leased are not due before their lease ends, so the loop's turn shows when it started.
    first = turn_taken_after(killed_at, 60)
    outcome.recoveries["first sweep of the restarted cluster"] = (first, 5.0)
    taken = picked_up(held, killed_at, 90)
    outcome.recoveries["dead cluster's leased runs picked up"] = (
        None if taken is None else time.monotonic() - restarted,
        30.0,
    )
    synced = synced_after(list(held), killed_at, 90)
    outcome.notes.append(
        f"...and synced {'never' if synced is None else f'{time.monotonic() - restarted:.1f} s'} after the restart"
    )
    bench.wait_terminal(pks, 120)
    bench.stop(second, signal.SIGINT, 20)
    return bench.check(outcome, pks)


def kill_sync_runs(bench: Bench) -> Outcome:
    from django.utils import timezone

    outcome = Outcome("2. kill -9 of manage.py sync_runs mid-sweep")
    bench.fake.set_faults(latency_ms=300)
    pks = bench.add_runs()
    first = bench.start("sync_runs", "--interval", "0.25", name="sync-1")
    wait_for_leases(pks)
    bench.stop(first, signal.SIGKILL, 5)
    killed_at = timezone.now()
    held = leases_of(pks)
    bench.terminate_other_backends()
    bench.fake.set_faults(latency_ms=20)
    outcome.notes.append(f"{len(held)} run(s) were leased by the killed sweeper")
    started = time.monotonic()
    second = bench.start("sync_runs", "--interval", "0.25", name="sync-2")
    taken = picked_up(held, killed_at, 90)
    outcome.recoveries["its leased runs picked up by the next sweeper"] = (
        None if taken is None else time.monotonic() - started,
        30.0,
    )
    synced = synced_after(list(held), killed_at, 90)
    outcome.notes.append(
        f"...and synced {'never' if synced is None else f'{time.monotonic() - started:.1f} s'} after its start"
    )
    bench.wait_terminal(pks, 120)
    rc = bench.stop(second, signal.SIGTERM, 20)
    outcome.notes.append(f"the second sweeper exited {rc} on SIGTERM")
    if rc != 0:
        outcome.recoveries["clean SIGTERM exit"] = (None, 0)
    return bench.check(outcome, pks)


def terminate_backends(bench: Bench) -> Outcome:
    from django.db.models import Max
    from django.utils import timezone

    from runs.models import Run

    outcome = Outcome("3. the sweeper's PostgreSQL backends terminated 3 times mid-sweep")
    bench.fake.set_faults(latency_ms=100)
    pks = bench.add_runs(run_seconds=15.0)
    sweeper = bench.start("sync_runs", "--interval", "0.25", name="sync-terminated")
    wait_for_leases(pks)
    worst = 0.0
    for _ in range(3):
        time.sleep(2.0)
        terminated = bench.terminate_other_backends()
        at = timezone.now()
        started = time.monotonic()
        while time.monotonic() - started < 60:
            latest = Run.objects.filter(pk__in=pks).aggregate(Max("last_synced"))["last_synced__max"]
            if latest and latest > at:
                break
            time.sleep(0.1)
        back = time.monotonic() - started
        worst = max(worst, back)
        outcome.notes.append(f"{terminated} backend(s) terminated; writing again after {back:.1f} s")
    alive = sweeper.poll() is None
    outcome.recoveries["slowest return to writing"] = (worst if alive else None, 10.0)
    bench.wait_terminal(pks, 120)
    rc = bench.stop(sweeper, signal.SIGTERM, 20)
    outcome.notes.append(f"sweeper still the same process after the terminations: {alive}; exit {rc} on SIGTERM")
    return bench.check(outcome, pks)


def provider_outage(bench: Bench) -> Outcome:
    outcome = Outcome("4. provider outage (every request 502 for 20 s)")
    bench.fake.set_faults(latency_ms=20)
    pks = bench.add_runs(run_seconds=8.0)
    sweeper = bench.start("sync_runs", "--interval", "0.25", name="sync-outage")
    wait_for_leases(pks)
    time.sleep(2.0)
    bench.fake.set_faults(mode="5xx", latency_ms=20)
    time.sleep(20.0)
    bench.fake.set_faults(latency_ms=20)
    recovered = bench.wait_terminal(pks, 180)
    outcome.recoveries["every run finished during the outage shown finished"] = (recovered, 60.0)
    outcome.notes.append("(the bound for this one is the credential's back-off; the breaker's work is issue 14)")
    bench.stop(sweeper, signal.SIGTERM, 20)
    return bench.check(outcome, pks)


def full_disk(bench: Bench) -> Outcome:
    from runs.actions import retry_archiving
    from runs.archive import MAX_ATTEMPTS
    from runs.models import Run, RunOutput
    from runs.sync import archive_all_due_outputs, sync_due_runs

    outcome = Outcome(f"5. full disk (storage with {DISK_ROOM // 1024} KB of room)")
    bench.fake.set_faults(latency_ms=5)
    # Only this scenario's outputs are archived here.
    RunOutput.objects.filter(archived=None).update(next_archive_after=None)
    pks = bench.add_runs(n=min(bench.n, 300), run_seconds=0.0, n_outputs=4)
    while Run.objects.filter(pk__in=pks).in_flight().exists():
        sync_due_runs(archive=False)
    media = Path(tempfile.mkdtemp(prefix="comfytrack-faults-media-"))
    temp = Path(tempfile.mkdtemp(prefix="comfytrack-faults-tmp-"))
    tempfile.tempdir = str(temp)
    from django.db.models import FileField

    from runs.tests.archive_helpers import FullDisk

    storage = FullDisk(room=DISK_ROOM, location=str(media))
    for name in ("file", "thumbnail"):
        file_field = RunOutput._meta.get_field(name)
        assert isinstance(file_field, FileField)
        file_field.storage = storage
    outputs = RunOutput.objects.filter(run_id__in=pks)
    total = outputs.count()
    logging.getLogger("runs.archive").setLevel(logging.CRITICAL)  # one line per failure: counted below instead
    archived_full = archive_all_due_outputs()
    failed = outputs.filter(archived=None)
    failed_count = failed.count()
    enospc = failed.filter(archive_error__startswith="No space left on device writing to media storage").count()
    pairs = RunOutput.objects.exclude(archived=None).values_list("file", "thumbnail")
    referenced = {name for pair in pairs for name in pair if name}
    on_disk = [p for p in media.rglob("*") if p.is_file()]
    orphans = [p for p in on_disk if str(p.relative_to(media)) not in referenced]
    empty = [p for p in on_disk if p.stat().st_size == 0]
    leaked = list(temp.iterdir())
    outcome.notes.append(
        f"disk full: {archived_full} of {total} outputs archived, {failed_count} failed ({enospc} saying "
        f"'No space left on device writing to media storage'), {len(orphans)} orphan and {len(empty)} empty "
        f"file(s) in storage, {len(leaked)} temp file(s) left"
    )
    retries = failed.filter(next_archive_after__isnull=False).count()
    outcome.notes.append(f"{retries} failure(s) scheduled for a later retry (bounded at {MAX_ATTEMPTS} attempts)")
    storage.room = 10**12  # space freed
    started = time.monotonic()
    for run in Run.objects.filter(pk__in=pks, outputs__archived=None).distinct():
        retry_archiving(run)  # what the run page's Retry archiving button does
    archive_all_due_outputs()
    elapsed = time.monotonic() - started
    left = outputs.filter(archived=None).count()
    mismatched = 0
    for output in outputs.exclude(archived=None):
        mismatched += hashlib.sha256(Path(media, output.file.name or "").read_bytes()).hexdigest() != output.sha256
    outcome.notes.append(
        f"after freeing space and retrying: {total - left} of {total} archived in {elapsed:.1f} s, "
        f"{mismatched} sha256 mismatch(es), {len(list(temp.iterdir()))} temp file(s) left"
    )
    clean = not (orphans or empty or leaked or left or mismatched) and enospc == failed_count
    outcome.recoveries["all archived after the retry"] = (elapsed if clean else None, 120.0)
    return bench.check(outcome, pks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="runs per scenario")
    parser.add_argument("--only", type=int, action="append", help="run only these scenario numbers")
    args = parser.parse_args()
    where = setup_django()
    from django.db import connection

    if connection.vendor != "postgresql":
        raise SystemExit("bench/faults.py needs PostgreSQL (DATABASE_URL=postgres://…)")
    scenarios = [kill_q_cluster, kill_sync_runs, terminate_backends, provider_outage, full_disk]
    print(f"database postgresql ({where}); {args.runs} runs per scenario; load average {os.getloadavg()[0]:.1f}")
    outcomes = []
    with RemoteFake(20.0) as fake:
        for number, scenario in enumerate(scenarios, 1):
            if args.only and number not in args.only:
                continue
            bench = Bench(fake, args.runs)
            try:
                outcome = scenario(bench)
            finally:
                bench.stop_all()
            outcomes.append(outcome)
            print(outcome.line(), flush=True)
    good = all(o.ok for o in outcomes)
    print("verdict:", "every duplicate and loss 0, every recovery in bounds" if good else "FAILED")


if __name__ == "__main__":
    main()
