import logging
import time

from django.core.management.base import BaseCommand

from runs.sync import sync_due_runs


class Command(BaseCommand):
    help = "Sync due runs with their providers: one sweep with --once, else sweep until interrupted."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="run one sweep of everything due, then exit")
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between sweeps (without --once)")

    def handle(self, *args, once, interval, **options):
        logging.getLogger("runs.sync").setLevel(logging.INFO)
        if once:
            stats = sync_due_runs()
            self.stdout.write(stats.summary())
            return
        try:
            while True:
                stats = sync_due_runs()
                if stats.claimed:
                    self.stdout.write(stats.summary())
                time.sleep(interval)
        except KeyboardInterrupt:
            self.stdout.write("Stopped")
