"""The alerts loop (a django-q2 schedule, and `manage.py send_alerts`): check credentials, turn new
events into messages, send the due messages. A schedule of its own: a slow mail server or chat webhook
never delays syncing runs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from django.utils import timezone

from alerts.messages import compose_due
from alerts.recording import check_credentials
from alerts.sending import deliver_due
from comfytrack.loops import run_loop

logger = logging.getLogger("comfytrack.alerts")
ALERTS_TURN = "alerts"


def alerts_pass(now: datetime | None = None) -> tuple[int, int, int]:
    """One pass: (incidents opened or closed for credentials, messages composed, messages sent)."""
    now = now or timezone.now()
    changed = check_credentials(now)
    composed = compose_due(now)
    sent = 0
    while True:
        done, failed = deliver_due()
        sent += done
        if not done and not failed:
            return changed, composed, sent


def loop_pass(left: float, should_stop: Callable[[], bool]) -> tuple[int, bool]:
    """One pass of the alerts loop: (messages sent, whether there was anything to do)."""
    changed, composed, sent = alerts_pass()
    if changed or composed or sent:
        logger.info("alerts: %s incident change(s), %s message(s) composed, %s sent", changed, composed, sent)
    return sent, bool(changed or composed or sent)


def alerts_loop(seconds: float = 100.0, idle_sleep: float = 5.0) -> int:
    """What the schedule runs every minute: passes for up to `seconds`, handing over to the next execution
    when it starts (comfytrack.loops). Overlapping runs are safe: rules are locked while composing,
    messages leased while sending."""
    return run_loop(loop_pass, idle_sleep, seconds=seconds, turn=ALERTS_TURN)
