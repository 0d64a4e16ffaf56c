"""comfytrack.rawsql.CompiledValuesQuery, and the API reads compiled with it (runs.schemas)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from comfytrack.rawsql import CompiledValuesQuery
from runs.models import Run, RunOutput, Status
from runs.queries import paginate
from runs.schemas import (
    _compiled_detail,
    _compiled_page,
    find_run_json,
    first_row_json,
    organization_runs_page,
    rows_json,
    run_row_queryset,
)

ON_POSTGRESQL = connection.vendor == "postgresql"


@pytest.fixture
def mixed_runs(org, other_org, provider, make_provider, make_run):
    """Runs with ties on created, errors, outputs and retries, plus another organization's runs."""
    base = timezone.now() - timedelta(hours=1)
    failed = make_run(provider, status=Status.FAILED, created=base, error={"message": "OOM", "node_id": 7})
    runs = [failed]
    for i in range(8):
        run = make_run(provider, status=Status.SUCCEEDED, created=base + timedelta(seconds=1 + i // 3), retry_of=failed)
        RunOutput.objects.create(run=run, key=f"k{i}", filename=f"o{i}.png", kind="image", width=8, height=8)
        runs.append(run)
    theirs = make_run(make_provider(other_org, name="Theirs"), created=base + timedelta(seconds=1))
    return runs, theirs


@pytest.mark.django_db
def test_compiled_pages_equal_the_orm_pages(org, mixed_runs):
    compiled, orm, cursor = [], [], None
    while True:
        items, cursor_a = organization_runs_page(org.pk, cursor, 3)
        page, cursor_b = paginate(run_row_queryset().filter(organization=org), cursor, 3)
        assert cursor_a == cursor_b
        compiled += items
        orm += rows_json(page)
        cursor = cursor_a
        if cursor is None:
            break
    assert compiled == orm
    assert len(compiled) == 9  # never the other organization's run
    assert {o["filename"] for o in compiled[0]["outputs"]} <= {"o6.png", "o7.png"}  # a tie, broken by code
    assert compiled[-1]["error"]["node_id"] == "7"
    # The first page (an integer parameter) compiles everywhere. After a cursor, SQLite rewrites the
    # datetime and UUID parameters, so there the ORM serves the same rows.
    assert _compiled_page(False).reusable
    assert _compiled_page(True).reusable is ON_POSTGRESQL


@pytest.mark.django_db
def test_compiled_detail_equals_the_orm_and_scopes_by_organization(org, other_org, mixed_runs):
    runs, theirs = mixed_runs
    for run in runs:
        assert find_run_json(org.pk, run.code) == first_row_json(run_row_queryset().filter(pk=run.pk))
    assert find_run_json(org.pk, theirs.code) is None
    assert find_run_json(other_org.pk, theirs.code)["id"] == theirs.code
    assert _compiled_detail().reusable is ON_POSTGRESQL


@pytest.mark.django_db
def test_it_refuses_sql_whose_parameters_are_not_all_stand_ins(org, provider, make_run):
    make_run(provider, status="failed")

    # "failed" is a parameter the caller did not pass as a stand-in: reusing the SQL would freeze it.
    def failed(org):
        return Run.objects.filter(organization=org, status="failed").values("code")

    refused = CompiledValuesQuery.compile(failed, [-5])
    assert not refused.reusable
    # It still answers, through the ORM, with the real values.
    assert refused.rows([org.pk]) == list(failed(org.pk)) and refused.rows([org.pk])
    with pytest.raises(ValueError, match="slice"):
        CompiledValuesQuery.compile(lambda org: Run.objects.filter(organization=org).values("code")[:5], [-5])


@pytest.mark.django_db
def test_compiled_rows_convert_values_like_the_orm(org, provider, make_run):
    make_run(provider, error={"message": "boom"})
    compiled = CompiledValuesQuery.compile(
        lambda org: Run.objects.filter(organization=org).values("code", "error", "created"), [-5]
    )
    assert compiled.rows([org.pk], limit=10) == list(
        Run.objects.filter(organization=org).values("code", "error", "created")
    )
    assert compiled.rows([org.pk + 10_000]) == []
