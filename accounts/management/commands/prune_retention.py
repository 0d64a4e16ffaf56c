from django.core.management.base import BaseCommand

from comfytrack.retention import prune_expired


class Command(BaseCommand):
    help = (
        "Apply each organization's retention limit now: delete the events, outputs and archived files of runs "
        "finished longer ago (runs in flight are never touched). The q cluster runs this daily."
    )

    def handle(self, *args, **options):
        self.stdout.write(prune_expired().summary())
