"""The claim-with-lease helper, on whichever database the suite runs on (SQLite by default, PostgreSQL with
DATABASE_URL): the same statements and the same guarantees on both."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import Future
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from comfytrack.leases import Holder, Lease
from runs.models import Run

LEASE = Lease(Run, "sync_locked_until", timedelta(seconds=15), renew_every=0.05)


@pytest.fixture
def runs(org, make_provider, make_run):
    provider = make_provider(org)
    now = timezone.now()
    return [make_run(provider, next_sync_after=now - timedelta(seconds=60 - i)) for i in range(12)]


def due(now=None):
    now = now or timezone.now()
    return Run.objects.filter(next_sync_after__lte=now).filter(LEASE.free(now)).order_by("next_sync_after")


def held_until() -> dict[int, datetime | None]:
    return dict(Run.objects.values_list("pk", "sync_locked_until"))


@pytest.mark.django_db
def test_it_claims_in_order_up_to_the_limit_and_sets_the_lease(runs):
    before = timezone.now()
    claimed = LEASE.claim(due(), 5)
    assert [run.pk for run in claimed] == [run.pk for run in runs[:5]]
    stored = held_until()
    for run in claimed:
        assert run.sync_locked_until == stored[run.pk]  # the instance has the lease as stored
        assert before + LEASE.length <= run.sync_locked_until <= timezone.now() + LEASE.length
    assert all(stored[run.pk] is None for run in runs[5:])


@pytest.mark.django_db
def test_a_second_claim_takes_the_next_rows_and_then_none(runs):
    first = LEASE.claim(due(), 8)
    second = LEASE.claim(due(), 8)
    assert {run.pk for run in first}.isdisjoint(run.pk for run in second)
    assert len(first) + len(second) == len(runs)
    assert LEASE.claim(due(), 8) == []


@pytest.mark.django_db
def test_a_lapsed_lease_is_claimed_again_and_held_past_the_claims_moment(runs):
    assert len(LEASE.claim(due(), 12)) == 12  # the worker dies here
    later = timezone.now() + LEASE.length + timedelta(seconds=1)
    again = LEASE.claim(due(later), 12, now=later)
    assert len(again) == 12
    assert all(run.sync_locked_until >= later + LEASE.length for run in again)


@pytest.mark.django_db
def test_a_claim_is_one_transaction_of_a_read_and_one_update(runs):
    with CaptureQueriesContext(connection) as queries:
        LEASE.claim(due(), 5)
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    assert [s for s in statements if s in ("SELECT", "UPDATE")] == ["SELECT", "UPDATE"]
    if connection.vendor == "postgresql":
        assert "FOR UPDATE OF" in queries.captured_queries[-2]["sql"] or any(
            "SKIP LOCKED" in q["sql"] for q in queries.captured_queries
        )


@pytest.mark.django_db
def test_renewal_holds_only_rows_still_leased_and_release_frees_them(runs):
    claimed = LEASE.claim(due(), 3)
    first, second, third = (run.pk for run in claimed)
    Run.objects.filter(pk=first).update(sync_locked_until=None)  # its work was recorded meanwhile
    stored = held_until()
    assert LEASE.renew([first, second, third]) == 2
    renewed = held_until()
    assert renewed[first] is None
    for pk in (second, third):
        new, old = renewed[pk], stored[pk]
        assert new is not None and old is not None and new > old
    assert LEASE.release([second]) == 1
    assert held_until()[second] is None
    assert [run.pk for run in LEASE.claim(due(), 1)] == [first]  # the free ones come back in order


@pytest.mark.django_db
def test_a_holder_renews_while_it_waits_and_releases_what_it_still_holds(runs, monkeypatch):
    claimed = LEASE.claim(due(), 4)
    holder = Holder(LEASE, (run.pk for run in claimed))
    renewals = []
    original = Lease.renew

    def counting(self, pks):
        renewals.append(sorted(pks))
        return original(self, pks)

    monkeypatch.setattr(Lease, "renew", counting)
    future: Future[str] = Future()
    threading.Timer(0.3, future.set_result, ["answers"]).start()
    assert holder.wait(future) == "answers"
    assert len(renewals) >= 2 and renewals[-1] == sorted(run.pk for run in claimed)
    holder.done([claimed[0].pk])
    holder.release_all()
    stored = held_until()
    assert stored[claimed[0].pk] is not None  # done: its lease is its worker's business
    assert all(stored[run.pk] is None for run in claimed[1:])
    assert holder.pks == set()


def test_a_lease_that_is_never_renewed_has_no_holder():
    with pytest.raises(ValueError, match="never renewed"):
        Holder(Lease(Run, "sync_locked_until", timedelta(minutes=2)))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("one_statement", [False, True], ids=["claim", "claim_where"])
def test_workers_claiming_at_once_never_get_the_same_row(org, make_provider, make_run, one_statement):
    provider = make_provider(org)
    now = timezone.now()
    for _ in range(60):
        make_run(provider, next_sync_after=now)
    barrier = threading.Barrier(3)
    claimed: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            barrier.wait(10)
            while batch := (claim_in_one_statement(7) if one_statement else LEASE.claim(due(), 7)):
                with lock:
                    claimed.extend(run.pk for run in batch)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert len(claimed) == 60
    assert Counter(claimed).most_common(1)[0][1] == 1


def free_and_due_sql() -> str:
    """`due()`'s condition written out for `claim_where` (the sweep's own is runs.sync._due_where)."""
    return "t.next_sync_after <= %s AND (t.sync_locked_until IS NULL OR t.sync_locked_until < %s)"


FIELDS = ("id", "code", "next_sync_after", "created", "n_outputs", "progress")


def claim_in_one_statement(limit: int, now=None, fields=FIELDS):
    now = now or timezone.now()
    at = Run._meta.get_field("next_sync_after").get_db_prep_value(now, connection)
    return LEASE.claim_where(
        free_and_due_sql(), [at, at], order_by="t.next_sync_after", limit=limit, fields=fields, now=now
    )


@pytest.mark.django_db
def test_a_one_statement_claim_takes_the_first_rows_in_order_with_their_values_typed(runs):
    before = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        claimed = claim_in_one_statement(5)
    statements = [q["sql"] for q in queries.captured_queries if q["sql"].split()[0].upper() in ("SELECT", "UPDATE")]
    assert len(statements) == 1 and statements[0].startswith("UPDATE") and "RETURNING" in statements[0]
    if connection.vendor == "postgresql":
        assert "SKIP LOCKED" in statements[0]
    assert {run.pk for run in claimed} == {run.pk for run in runs[:5]}
    stored = held_until()
    loaded = {row["id"]: row for row in Run.objects.filter(pk__in=[run.pk for run in claimed]).values(*FIELDS)}
    for run in claimed:
        # Of the types the ORM loads, on SQLite too (where times and UUIDs come back as text).
        assert {name: getattr(run, name) for name in FIELDS} == loaded[run.pk]
        assert type(run.code) is type(loaded[run.pk]["code"]) and run.created.tzinfo is not None
        until = stored[run.pk]
        assert until is not None and before + LEASE.length <= until <= timezone.now() + LEASE.length
        assert run.get_deferred_fields() >= {"status", "external_id"}  # only the fields asked for were read
    assert all(stored[run.pk] is None for run in runs[5:])


@pytest.mark.django_db
def test_a_one_statement_claim_skips_held_rows_and_takes_lapsed_ones_again(runs):
    first = claim_in_one_statement(8)
    second = claim_in_one_statement(8)
    assert {run.pk for run in first}.isdisjoint(run.pk for run in second)
    assert len(first) + len(second) == len(runs)
    assert claim_in_one_statement(8) == []
    later = timezone.now() + LEASE.length + timedelta(seconds=1)
    again = claim_in_one_statement(12, now=later)
    assert len(again) == 12
    assert all(stored is not None and stored >= later + LEASE.length for stored in held_until().values())


@pytest.mark.django_db
def test_a_one_statement_claim_takes_no_more_than_its_limit_whatever_the_plan(org, make_provider, make_run):
    """Statistics taken while the table was empty lead PostgreSQL to a nested loop that runs the picking
    subquery again for every row; run again, a subquery that locks with SKIP LOCKED passes over the rows
    this statement already updated and picks the next ones, so the UPDATE would take every due row."""
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(Run._meta.db_table)}")
    provider = make_provider(org)
    now = timezone.now()
    runs = [make_run(provider, next_sync_after=now - timedelta(seconds=60 - i)) for i in range(12)]
    claimed = claim_in_one_statement(5)
    assert sorted(run.pk for run in claimed) == [run.pk for run in runs[:5]]
    assert sum(until is not None for until in held_until().values()) == 5
