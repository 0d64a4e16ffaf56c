"""runs.bulk: the batch writes behave like the ORM's, on PostgreSQL (column arrays) and SQLite alike."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.utils import timezone

from runs.bulk import add_to, insert_rows, update_where
from runs.models import Run, RunEvent, RunOutput


def test_insert_fills_model_defaults(provider, make_run) -> None:
    run = make_run(provider)
    insert_rows(
        RunEvent,
        [
            {"run_id": run.pk, "source": "poll", "to_status": "running"},
            {"run_id": run.pk, "source": "webhook", "from_status": "running", "to_status": "failed", "detail": "é ✓"},
        ],
    )
    events = list(RunEvent.objects.filter(run=run).order_by("id"))
    assert [(e.source, e.from_status, e.to_status, e.detail) for e in events] == [
        ("poll", "", "running", ""),
        ("webhook", "running", "failed", "é ✓"),
    ]
    assert all(abs(e.created - timezone.now()) < timedelta(minutes=1) for e in events)


def test_insert_skips_conflicts_and_returns_only_the_rows_written(provider, make_run) -> None:
    run = make_run(provider)
    common = {"run_id": run.pk, "organization_id": run.organization_id, "filename": "a.png", "width": None}
    assert insert_rows(RunOutput, [{**common, "key": "a"}], skip_conflicts=True, returning=("run", "key")) == [
        (run.pk, "a")
    ]
    # "a" exists already: only "b" is written and reported; columns that are all NULL are fine too.
    written = insert_rows(
        RunOutput, [{**common, "key": "a"}, {**common, "key": "b"}], skip_conflicts=True, returning=("run", "key")
    )
    assert written == [(run.pk, "b")]
    outputs = RunOutput.objects.filter(run=run).order_by("key")
    assert [(o.key, o.width, o.file.name, len(str(o.code))) for o in outputs] == [
        ("a", None, "", 36),
        ("b", None, "", 36),
    ]


def test_update_writes_only_rows_whose_guard_still_holds(provider, make_run) -> None:
    queued, running = make_run(provider, status="queued"), make_run(provider, status="running")
    error = {"message": "boom", "node_id": "3"}
    won = update_where(
        Run,
        ("status", "error", "progress"),
        [(queued.pk, "queued", ["failed", error, 0.5]), (running.pk, "queued", ["failed", error, 0.5])],
        guard="status",
    )
    assert won == {queued.pk}
    queued.refresh_from_db()
    running.refresh_from_db()
    assert (queued.status, queued.error, queued.progress) == ("failed", error, 0.5)
    assert (running.status, running.error, running.progress) == ("running", {}, None)


def test_add_to_increments_counters_in_one_statement(provider, make_run, django_assert_num_queries) -> None:
    first, second = make_run(provider, n_outputs=2), make_run(provider)
    statements = 1 if connection.vendor == "postgresql" else 2
    with django_assert_num_queries(statements):
        add_to(Run, "n_outputs", {first.pk: 3, second.pk: 1})
    assert list(
        Run.objects.filter(pk__in=[first.pk, second.pk]).order_by("pk").values_list("n_outputs", flat=True)
    ) == [
        5,
        1,
    ]


def test_update_grows_increment_columns_and_sets_the_rest(provider, make_run) -> None:
    run = make_run(provider, status="running", n_outputs=2)
    Run.objects.filter(pk=run.pk).update(n_outputs=5)  # another writer moved the counter meanwhile
    won = update_where(
        Run, ("status", "n_outputs"), [(run.pk, "running", ["succeeded", 3])], guard="status", increments=("n_outputs",)
    )
    assert won == {run.pk}
    assert Run.objects.values_list("status", "n_outputs").get(pk=run.pk) == ("succeeded", 8)


def test_columns_alike_in_every_row_and_columns_that_differ_land_row_by_row(provider, make_run) -> None:
    # On PostgreSQL a column with one value throughout is sent once; the rows must not notice.
    runs = [make_run(provider, status="running") for _ in range(3)]
    common = {"organization_id": runs[0].organization_id, "filename": "a.png", "content_type": "image/png"}
    widths = [7, 7, None]  # alike at first, then not
    written = insert_rows(
        RunOutput,
        [{**common, "run_id": run.pk, "key": "k", "width": width} for run, width in zip(runs, widths, strict=True)],
        returning=("run", "width", "filename"),
    )
    assert written == [(run.pk, width, "a.png") for run, width in zip(runs, widths, strict=True)]
    codes = set(RunOutput.objects.filter(run__in=runs).values_list("code", flat=True))
    assert len(codes) == 3  # a callable default is still called per row

    finished = timezone.now()
    won = update_where(
        Run,
        ("status", "finished", "progress"),
        [
            (run.pk, "running", ["succeeded", finished, progress])
            for run, progress in zip(runs, [1.0, 1.0, 0.5], strict=True)
        ],
        guard="status",
    )
    assert won == {run.pk for run in runs}
    assert list(Run.objects.filter(pk__in=won).order_by("pk").values_list("status", "finished", "progress")) == [
        ("succeeded", finished, 1.0),
        ("succeeded", finished, 1.0),
        ("succeeded", finished, 0.5),
    ]


def test_a_single_row_with_every_column_alike_is_written_once(provider, make_run) -> None:
    run = make_run(provider)
    insert_rows(RunEvent, [{"run_id": run.pk, "source": "poll", "to_status": "queued"}])
    add_to(Run, "n_outputs", {run.pk: 2})
    assert list(RunEvent.objects.filter(run=run).values_list("to_status", flat=True)) == ["queued"]
    assert Run.objects.values_list("n_outputs", flat=True).get(pk=run.pk) == 2
