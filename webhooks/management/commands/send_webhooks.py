"""manage.py send_webhooks [--once]: send due outbound webhook deliveries (what the q cluster does)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from comfytrack.loops import run_loop
from webhooks.delivery import deliver_due_webhooks, delivery_pass


class Command(BaseCommand):
    help = "Send due outbound webhook deliveries. --once: one pass over everything due now, then exit."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Send what is due now and exit.")

    def handle(self, *args, once: bool = False, **options):
        if not once:
            # Until SIGTERM/SIGINT; a failed pass (the database went away) is retried after a pause.
            run_loop(delivery_pass, idle_sleep=1.0)
            self.stdout.write("Stopped")
            return
        delivered = failed = deferred = 0
        for _ in range(100):  # every claimable batch, bounded
            stats = deliver_due_webhooks()
            delivered, failed = delivered + stats.delivered, failed + stats.failed
            deferred += stats.deferred
            if not stats.claimed or stats.claimed == stats.deferred:
                break
        self.stdout.write(f"{delivered} delivered, {failed} failed, {deferred} deferred")
