"""The stats aggregates against a recount of every run in Python, and the two percentile paths (sorted in
PostgreSQL, sorted here) against each other, on whichever database the suite runs."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from runs.models import TERMINAL, Run, Status
from runs.stats import compute_stats, per_provider, percentile, percentiles_in_database, percentiles_in_python

POSTGRES = connection.vendor == "postgresql"


def _seed(org, provider, other, make_run, count: int):
    """Runs with every kind of time: the provider's or observed, with and without a queued time, a start
    before the queued time (clamped to 0), microseconds, several days, costs and failure messages."""
    rng = random.Random(count)
    now = timezone.now()
    messages = [
        "CUDA out of memory",
        "CUDA out of memory\nat node 3",  # counted with the one above: first line
        "x" * 200,  # cut at 160
        "",
        "   ",
        None,
        "\nstarts with a blank line",
    ]
    for i in range(count):
        created = now - timedelta(
            days=rng.randint(0, 5), seconds=rng.randint(0, 80_000), microseconds=rng.randint(0, 999_999)
        )
        queued = created + timedelta(seconds=rng.randint(0, 3), microseconds=rng.randint(0, 999_999)) if i % 3 else None
        started = created + timedelta(seconds=rng.randint(-2, 9), microseconds=rng.randint(0, 999_999))
        finished = started + timedelta(seconds=rng.randint(0, 120), microseconds=rng.randint(0, 999_999))
        if i % 11 == 0:  # days long: PostgreSQL's double for it is rounded twice
            finished += timedelta(days=rng.randint(1, 400), microseconds=500 - finished.microsecond % 1000)
        status = rng.choice([Status.SUCCEEDED, Status.SUCCEEDED, Status.FAILED, Status.RUNNING, Status.CANCELLED])
        error = {}
        if status == Status.FAILED:
            message = rng.choice(messages)
            error = {} if message is None else {"message": message}
        make_run(
            provider if i % 4 else other,
            status=status,
            created=created,
            queued=queued,
            started=started if i % 7 else None,
            finished=finished if status in TERMINAL and i % 5 else None,
            created_source=rng.choice(["provider", "provider", "observed"]),
            queued_source=rng.choice(["provider", "observed"]) if queued else "",
            started_source=rng.choice(["provider", "provider", "observed"]) if i % 7 else "",
            finished_source=rng.choice(["provider", "provider", "observed"]) if status in TERMINAL and i % 5 else "",
            cost=Decimal(rng.randint(1, 90_000)) / 1_000_000 if status in TERMINAL and i % 2 else None,
            error=error,
        )


def _recount(runs):
    """Every figure from every run, one by one (what the stats page showed before its aggregates moved
    into the database)."""
    per_day: dict = defaultdict(Counter)
    costs: dict = defaultdict(lambda: defaultdict(Decimal))
    providers: dict = {}
    durations: dict = defaultdict(lambda: ([], []))
    failures: Counter[str] = Counter()
    for run in runs.select_related("provider"):
        day = run.created.date()
        per_day[day][run.status] += 1
        entry = providers.setdefault(
            run.provider_id, {"total": 0, "finished": 0, "succeeded": 0, "costed": 0, "cost": None}
        )
        entry["total"] += 1
        entry["finished"] += run.status in TERMINAL
        entry["succeeded"] += run.status == Status.SUCCEEDED
        if run.cost is not None:
            costs[day][run.provider.name] += run.cost
            entry["costed"] += 1
            entry["cost"] = (entry["cost"] or Decimal(0)) + run.cost
        if run.started_source == "provider":
            waited = (run.queued, run.queued_source) if run.queued else (run.created, run.created_source)
            if waited[1] == "provider":
                durations[run.provider_id][0].append(max((run.started - waited[0]).total_seconds(), 0.0))
            if run.finished and run.finished_source == "provider":
                durations[run.provider_id][1].append(max((run.finished - run.started).total_seconds(), 0.0))
        if run.status in ("failed", "timed_out", "lost"):
            message = (run.error or {}).get("message")
            text = message if isinstance(message, str) and message.strip() else "(no message)"
            failures[text.splitlines()[0][:160]] += 1
    times = {}
    for provider_id, (queue, run_times) in durations.items():
        queue.sort()
        run_times.sort()
        times[provider_id] = (
            percentile(queue, 0.5),
            percentile(queue, 0.95),
            percentile(run_times, 0.5),
            percentile(run_times, 0.95),
        )
    return per_day, costs, providers, times, failures


@pytest.mark.parametrize("count", [1, 2, 6, 41, 160])
def test_stats_equal_a_recount_of_every_run(org, provider, make_provider, make_run, count):
    other = make_provider(org, name="Another")
    _seed(org, provider, other, make_run, count)
    now = timezone.now()
    runs = Run.objects.filter(organization=org)
    stats = compute_stats(runs, now - timedelta(days=30), now)
    per_day, costs, providers, times, failures = _recount(runs)

    assert dict(stats.per_day) == {day: dict(counts) for day, counts in per_day.items()}
    assert dict(stats.cost_per_day) == {day: dict(by_name) for day, by_name in costs.items()}
    assert stats.total == count
    for entry in stats.providers:
        provider_id = Run.objects.filter(provider__code=entry.code).values_list("provider_id", flat=True).first()
        counted = providers[provider_id]
        assert (entry.total, entry.finished, entry.succeeded) == (
            counted["total"],
            counted["finished"],
            counted["succeeded"],
        )
        assert (entry.costed, entry.cost_total) == (counted["costed"], counted["cost"])
        expected = times.get(provider_id, (None, None, None, None))
        assert (entry.queue_p50, entry.queue_p95, entry.run_p50, entry.run_p95) == expected
    assert sorted(p.code for p in stats.providers) == sorted(
        p.code for p in per_provider(runs.filter(created__lte=now))
    )
    ranked = sorted(failures.items(), key=lambda item: (-item[1], item[0]))[:5]
    assert stats.top_failures == ranked


@pytest.mark.skipif(not POSTGRES, reason="percentile_disc is PostgreSQL's")
@pytest.mark.parametrize("count", [1, 2, 3, 4, 6, 10, 41, 200])
def test_postgres_percentiles_are_the_python_ones(org, provider, make_provider, make_run, count):
    """Nearest rank with Python's rounding (index round(f * n + 0.5) - 1, half to even) picked by
    percentile_disc: counts where the two could part (n = 4, 6: a .5 index) are among these."""
    other = make_provider(org, name="Another")
    _seed(org, provider, other, make_run, count)
    window = Run.objects.filter(organization=org)
    timed: dict[int, tuple[int, int]] = {}
    in_python = percentiles_in_python(window)
    for provider_id in in_python:
        rows = window.filter(provider_id=provider_id)
        queue = sum(
            1
            for r in rows
            if r.started_source == "provider" and (r.queued_source if r.queued else r.created_source) == "provider"
        )
        run = sum(1 for r in rows if r.started_source == "provider" and r.finished and r.finished_source == "provider")
        timed[provider_id] = (queue, run)
    assert percentiles_in_database(window, timed) == in_python


def test_percentiles_of_equal_and_tied_durations(org, provider, make_run):
    """Six runs: run times 10, 20, 20, 30, 40, 50 s; the median by this rounding is the 4th (30 s)."""
    now = timezone.now()
    for seconds in (50, 20, 10, 40, 20, 30):
        make_run(
            provider,
            status=Status.SUCCEEDED,
            created=now - timedelta(minutes=10),
            started=now - timedelta(minutes=10, seconds=-1),
            finished=now - timedelta(minutes=10, seconds=-1 - seconds),
            created_source="provider",
            started_source="provider",
            finished_source="provider",
        )
    (entry,) = compute_stats(Run.objects.filter(organization=org), now - timedelta(days=1), now).providers
    assert (entry.queue_p50, entry.queue_p95, entry.run_p50, entry.run_p95) == (1.0, 1.0, 30.0, 50.0)


@pytest.mark.skipif(not POSTGRES, reason="extended statistics are PostgreSQL's")
def test_the_day_grouping_has_statistics_on_its_own_expression(org, provider, make_run):
    """The statistics (migration 0016) help only while they are on the very expression the grouping
    query sends: PostgreSQL matches them by expression."""
    from django.test.utils import CaptureQueriesContext

    make_run(provider, status=Status.SUCCEEDED)
    with CaptureQueriesContext(connection) as captured:
        compute_stats(Run.objects.filter(organization=org), timezone.now() - timedelta(days=1))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_statisticsobjdef_expressions(oid)::text FROM pg_statistic_ext "
            "WHERE stxname = 'runs_run_created_day'"
        )
        ((expressions,),) = cursor.fetchall()
    assert "AT TIME ZONE 'UTC'" in expressions
    assert any('("runs_run"."created" AT TIME ZONE \'UTC\')::date' in q["sql"] for q in captured.captured_queries)


DAYS_LONG = [timedelta(days=days, seconds=seconds, microseconds=500) for days, seconds in [(1, 7), (2, 59), (1, 3601)]]
# ~7,600 years (a provider's garbage times): past what PostgreSQL's bigint sort key holds to the
# microsecond; this one's key is 18 µs off there, a millisecond off once rounded.
MILLENNIA_LONG = [timedelta(days=2784037, seconds=63180, microseconds=571470), timedelta(seconds=3, microseconds=1)]


@pytest.mark.parametrize("lengths", [DAYS_LONG, [*MILLENNIA_LONG, timedelta(seconds=9)]], ids=["days", "millennia"])
def test_percentiles_of_long_durations_keep_their_microseconds(org, provider, make_run, lengths):
    """Durations of days ending in half a millisecond: the rounding to milliseconds depends on the last
    bit of the double, which must be Python's (timedelta.total_seconds) on either path; and durations
    too long for PostgreSQL's exact sort key, which must still come out as Python's."""
    now = timezone.now().replace(microsecond=0)
    created = now - timedelta(days=3)
    for length in lengths:
        make_run(
            provider,
            status=Status.SUCCEEDED,
            created=created,
            started=created,
            finished=created + length,
            created_source="provider",
            started_source="provider",
            finished_source="provider",
        )
    (entry,) = compute_stats(Run.objects.filter(organization=org), now - timedelta(days=4), now).providers
    ordered = sorted(length.total_seconds() for length in lengths)
    assert (entry.run_p50, entry.run_p95) == (round(ordered[1], 3), round(ordered[2], 3))


def _scans_of(plan: dict, table: str) -> list[dict]:
    found = [plan] if plan.get("Relation Name") == table else []
    return found + [scan for child in plan.get("Plans", []) for scan in _scans_of(child, table)]


@pytest.mark.skipif(not POSTGRES, reason="the covering index (migration 0018) is PostgreSQL's")
def test_the_window_queries_read_only_what_the_covering_index_holds(org, provider, make_run):
    """The grouping and percentile queries can be answered from runs_run_org_stats alone (an index-only
    scan): every column of runs_run their plans' scans read is one the index holds."""
    import re

    from django.test.utils import CaptureQueriesContext

    now = timezone.now()
    provider_times = {f"{end}_source": "provider" for end in ("created", "started", "finished")}
    make_run(provider, status=Status.SUCCEEDED, created=now, started=now, finished=now, **provider_times)
    with CaptureQueriesContext(connection) as captured:
        compute_stats(Run.objects.filter(organization=org), now - timedelta(days=1), now)
    window_queries = [
        q["sql"] for q in captured.captured_queries if "GROUP BY" in q["sql"] or "percentile_disc" in q["sql"]
    ]
    window_queries = [sql for sql in window_queries if "error" not in sql]  # top failures read the messages
    assert len(window_queries) == 2
    columns = {field.column for field in Run._meta.concrete_fields}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indexrelid = 'runs_run_org_stats'::regclass"
        )
        held = {name for (name,) in cursor.fetchall()}
        for sql in window_queries:
            cursor.execute(f"EXPLAIN (VERBOSE, FORMAT JSON) {sql}")
            (scan,) = _scans_of(cursor.fetchone()[0][0]["Plan"], "runs_run")
            text = " ".join([*scan["Output"], scan.get("Filter", ""), scan.get("Index Cond", "")])
            read = set(re.findall(r"\w+", text)) & columns
            assert "created" in read and read <= held, read - held


@pytest.mark.skipif(not POSTGRES, reason="the covering index (migration 0018) is PostgreSQL's")
@pytest.mark.django_db(transaction=True)  # a concurrent index build cannot run inside a transaction
def test_the_index_migration_rebuilds_an_index_an_interrupted_build_left_invalid():
    import importlib

    migration = importlib.import_module("runs.migrations.0018_run_stats_covering_index")

    def valid() -> bool | None:
        with connection.cursor() as cursor:
            cursor.execute(migration.IS_INVALID)
            row = cursor.fetchone()
        return None if row is None else not row[0]

    assert valid() is True
    with connection.cursor() as cursor:  # what an interrupted CREATE INDEX CONCURRENTLY leaves
        cursor.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = to_regclass('runs_run_org_stats')")
    assert valid() is False
    with connection.schema_editor(atomic=False) as editor:
        migration.create(None, editor)
    assert valid() is True
