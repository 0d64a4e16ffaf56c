"""manage.py send_alerts [--once]: what the q cluster's alerts schedule does."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from alerts.tasks import alerts_pass, loop_pass
from comfytrack.loops import run_loop


class Command(BaseCommand):
    help = "Check alert rules and send due alert messages. --once: one pass, then exit."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="One pass over what is due now, then exit.")

    def handle(self, *args, once: bool = False, **options):
        if not once:
            # Until SIGTERM/SIGINT; a failed pass (the database went away) is retried after a pause.
            run_loop(loop_pass, idle_sleep=5.0)
            self.stdout.write("Stopped")
            return
        changed, composed, sent = alerts_pass()
        self.stdout.write(f"{changed} incident change(s), {composed} message(s) composed, {sent} sent")
