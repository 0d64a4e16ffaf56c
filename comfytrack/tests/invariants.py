"""What "nothing lost, nothing duplicated" means after several workers shared the same runs."""

from __future__ import annotations

from collections import Counter

from runs.models import Run, RunEvent, RunOutput, Status
from webhooks.models import WebhookDelivery


def assert_every_change_applied_once(
    runs: list[Run], outputs_per_run: int, received: list[tuple[str, str]] | None = None
) -> None:
    """Every run succeeded with one event per status it reached, its outputs recorded and archived once,
    and (with `received`, what the webhook receiver got) each webhook message sent exactly once."""
    ids = [run.pk for run in runs]
    finished = Run.objects.filter(pk__in=ids)
    assert set(finished.values_list("status", flat=True)) == {Status.SUCCEEDED}
    events = Counter(RunEvent.objects.filter(run__in=ids).values_list("run_id", "to_status"))
    assert max(events.values()) == 1, [key for key, count in events.items() if count > 1][:5]
    assert sum(1 for (_, status) in events if status == Status.SUCCEEDED) == len(ids)
    outputs = RunOutput.objects.filter(run__in=ids)
    assert Counter(outputs.values_list("run_id", flat=True)) == dict.fromkeys(ids, outputs_per_run)
    assert set(finished.values_list("n_outputs", flat=True)) == {outputs_per_run}
    assert not outputs.filter(archived=None).exists()
    # Each output archived once: one file and one thumbnail each, no two outputs sharing a file.
    names = list(outputs.values_list("file", flat=True)) + list(outputs.values_list("thumbnail", flat=True))
    assert len(set(names)) == len(names) == 2 * len(ids) * outputs_per_run
    if received is None:
        return
    deliveries = WebhookDelivery.objects.all()
    per_message = Counter(deliveries.values_list("event_id", flat=True))
    assert max(per_message.values()) == 1
    assert deliveries.filter(event_type="run.succeeded").count() == len(ids)
    assert not deliveries.filter(delivered=None).exists()
    got = Counter(message_id for message_id, _ in received)
    assert got == dict.fromkeys(per_message, 1), "a webhook was lost or sent twice"
