"""runs.run_reads: the API's run detail and unfiltered list as SQL through the cursor give exactly what
the ORM's `run_row_queryset` gives, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import ApiKey
from runs.models import RunOutput, Status
from runs.queries import paginate
from runs.schemas import find_run_json, first_row_json, organization_runs_page, rows_json, run_row_queryset


@pytest.fixture
def mixed_runs(org, other_org, provider, make_provider, make_run):
    """Runs with ties on created, errors, costs, outputs and retries, plus another organization's runs."""
    base = timezone.now() - timedelta(hours=1)
    failed = make_run(provider, status=Status.FAILED, created=base, error={"message": "OOM", "node_id": 7})
    failed.cost, failed.cost_source, failed.progress = Decimal("0.012340"), "estimated", 0.25
    failed.save(update_fields=["cost", "cost_source", "progress"])
    runs = [failed]
    for i in range(8):
        run = make_run(provider, status=Status.SUCCEEDED, created=base + timedelta(seconds=1 + i // 3), retry_of=failed)
        RunOutput.objects.create(run=run, key=f"k{i}", filename=f"o{i}.png", kind="image", width=8, height=8)
        runs.append(run)
    theirs = make_run(make_provider(other_org, name="Theirs"), created=base + timedelta(seconds=1))
    return runs, theirs


@pytest.mark.django_db
def test_pages_equal_the_orm_pages(org, mixed_runs):
    read, orm, cursor = [], [], None
    while True:
        items, cursor_a = organization_runs_page(org.pk, cursor, 3)
        page, cursor_b = paginate(run_row_queryset().filter(organization=org), cursor, 3)
        assert cursor_a == cursor_b
        read += items
        orm += rows_json(page)
        cursor = cursor_a
        if cursor is None:
            break
    assert read == orm
    assert len(read) == 9  # never the other organization's run
    assert {o["filename"] for o in read[0]["outputs"]} <= {"o6.png", "o7.png"}  # a tie, broken by code
    failed = read[-1]
    assert failed["error"]["node_id"] == "7" and failed["cost"] == "0.012340" and failed["progress"] == 0.25
    assert isinstance(failed["id"], uuid.UUID) and failed["created"].utcoffset() == timedelta(0)
    assert read[0]["retry_of"] == failed["id"]


@pytest.mark.django_db
def test_the_detail_equals_the_orm_and_is_scoped_by_organization(org, other_org, mixed_runs):
    runs, theirs = mixed_runs
    for run in runs:
        assert find_run_json(org.pk, run.code) == first_row_json(run_row_queryset().filter(pk=run.pk))
    assert find_run_json(org.pk, theirs.code) is None
    assert find_run_json(org.pk, uuid.uuid4()) is None
    found = find_run_json(other_org.pk, theirs.code)
    assert found is not None and found["id"] == theirs.code


@pytest.mark.django_db
def test_an_api_key_is_found_by_its_prefix_and_only_while_active(org):
    key, plain = ApiKey.issue(org, "ci")
    found = ApiKey.objects.authenticate(plain)
    assert found is not None and (found.pk, found.code, found.organization_id) == (key.pk, key.code, org.pk)
    assert ApiKey.objects.authenticate(plain[:-1] + ("A" if plain[-1] != "A" else "B")) is None
    key.revoked = timezone.now()
    key.save(update_fields=["revoked"])
    assert ApiKey.objects.authenticate(plain) is None
