"""Alert messages are claimed with a lease (comfytrack.leases): a claimed message is not claimed again
while its lease lasts, and comes back once it lapses (a worker that died mid-send)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from alerts.models import Channel, Message
from alerts.sending import LEASE, claim_due


def test_a_claimed_message_is_held_until_its_lease_lapses(org) -> None:
    channel = Channel.objects.create(organization=org, name="ops", kind=Channel.Kind.EMAIL, emails="ops@example.com")
    now = timezone.now()
    first, second = (Message.objects.create(channel=channel, subject=s, text=s, next_attempt_at=now) for s in "ab")

    assert [m.pk for m in claim_due(now, limit=1)] == [first.pk]
    first.refresh_from_db()
    assert first.next_attempt_at is not None and first.next_attempt_at >= now + LEASE.length
    assert [m.pk for m in claim_due(now)] == [second.pk]  # the held one is skipped
    assert claim_due(now) == []
    later = now + LEASE.length + timedelta(seconds=5)
    assert {m.pk for m in claim_due(later)} == {first.pk, second.pk}
