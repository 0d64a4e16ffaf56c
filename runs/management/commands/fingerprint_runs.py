from django.core.management.base import BaseCommand

from runs.backfill import fingerprint_runs
from runs.models import Run


class Command(BaseCommand):
    help = "Compute the workflow fingerprint of runs whose workflow is known (all of them with --all)."

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="Recompute every run's, not only the missing ones.")

    def handle(self, *args, all, **options):
        changed = fingerprint_runs(Run, only_missing=not all)
        self.stdout.write(f"{changed:,} run(s) fingerprinted")
