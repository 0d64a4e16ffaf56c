from django.core.management.base import BaseCommand

from insights.costing import price_runs
from runs.models import Run


class Command(BaseCommand):
    help = "Write the cost of every finished run from its provider's current prices."

    def handle(self, *args, **options):
        changed = price_runs(Run.objects.all())
        self.stdout.write(f"{changed:,} run(s) re-costed")
