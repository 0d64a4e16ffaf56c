import logging

from django.core.management.base import BaseCommand, CommandError

from comfytrack.loops import run_loop
from runs.graphs import fetch_all_due_graphs
from runs.sync import archive_all_due_outputs, sync_due_runs

# Seconds of graph requests and of archiving between two sweeps of the loop (--once does everything due).
GRAPH_SLICE = 5.0
ARCHIVE_SLICE = 5.0


class Command(BaseCommand):
    help = "Sync due runs with their providers: one sweep with --once, else sweep until interrupted."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="run one sweep of everything due, then exit")
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between sweeps (without --once)")

    def handle(self, *args, once, interval, **options):
        logging.getLogger("runs.sync").setLevel(logging.INFO)
        if once:
            try:
                stats = sync_due_runs()
            except Exception as exc:
                # A person reads this: the reason, not a traceback (e.g. the database is unreachable).
                raise CommandError(f"The sweep failed: {type(exc).__name__}: {exc}".splitlines()[0]) from None
            self.stdout.write(stats.summary())
            for line in stats.failure_lines():
                self.stdout.write(f"  failing: {line}")
            return

        def one_pass(left, should_stop) -> tuple[int, bool]:
            stats = sync_due_runs(archive=False, should_stop=should_stop)
            # Graphs and archive in slices, so that a backlog never holds the next sweep back for long.
            stats.graphs = fetch_all_due_graphs(should_stop=should_stop, max_seconds=GRAPH_SLICE)
            stats.archived = archive_all_due_outputs(should_stop=should_stop, max_seconds=ARCHIVE_SLICE)
            if stats.claimed or stats.graphs or stats.archived:
                self.stdout.write(stats.summary())
            return stats.claimed, False  # wait `interval` between sweeps either way

        # Until SIGTERM/SIGINT: the sweep in hand finishes its batch and hands back the next one's leases.
        # A failed sweep (the database went away) is logged and retried after a pause.
        run_loop(one_pass, idle_sleep=interval)
        self.stdout.write("Stopped")
