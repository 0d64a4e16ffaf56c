"""`manage.py demo`: serve the Simulator (fake provider) and keep a trickle of demo runs flowing."""

from __future__ import annotations

import random
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from providers.clients.base import SubmissionRejected
from providers.fake import FakeProviderServer
from runs.demo import ensure_demo, prepare_simulator, submit_demo_run


class Command(BaseCommand):
    help = "Run the Simulator provider and submit a demo run every few seconds (COMFYTRACK_DEMO must be on)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8189, help="the Simulator's port on 127.0.0.1")
        parser.add_argument("--every", type=float, default=8.0, help="seconds between demo runs (on average)")
        parser.add_argument("--count", type=int, default=0, help="stop after this many runs (0: run until stopped)")
        parser.add_argument("--enabled", action="store_true", help="print whether the demo is on, then exit")

    def handle(self, *args, port, every, count, enabled, **options):
        if enabled:
            self.stdout.write("on" if settings.COMFYTRACK_DEMO else "off")
            return
        if not settings.COMFYTRACK_DEMO:
            raise CommandError("The demo is off (set COMFYTRACK_DEMO=true to turn it on).")
        rng = random.Random()
        with FakeProviderServer(port=port) as simulator:
            provider = ensure_demo(simulator.base_url("comfyui"), simulator.base_url("comfycloud"))
            prepare_simulator(simulator.state)
            self.stdout.write(f"Demo: Simulator on {simulator.root}, a demo run every ~{every:g} s (Ctrl-C stops)")
            submitted = 0
            try:
                while not count or submitted < count:
                    close_old_connections()
                    submitted += 1
                    try:
                        run = submit_demo_run(provider, simulator.state, rng)
                    except SubmissionRejected as exc:
                        # Refused at validation, as a real ComfyUI refuses it: no run, the reason instead.
                        self.stdout.write(f"demo submission refused: {exc.message}")
                    else:
                        self.stdout.write(f"demo run {run.code} ({run.status})")
                    time.sleep(rng.uniform(every * 0.5, every * 1.5))
            except KeyboardInterrupt:
                pass
        self.stdout.write(f"Demo stopped after {submitted} runs")
