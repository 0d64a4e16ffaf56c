"""The demo: Demo organization, Simulator provider, runs that succeed with PNGs or fail the ways real runs do."""

from __future__ import annotations

import random
from collections import Counter
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import Organization
from insights.models import Price
from providers.clients.base import SubmissionRejected
from providers.fake.state import FAILED, RUNNING, SUCCEEDED
from runs.actions import sync_run_now
from runs.demo import (
    FAILURE_RATE,
    FAILURES,
    TEMPLATES,
    demo_workflow,
    ensure_demo,
    pick_outcome,
    prepare_simulator,
    submit_demo_run,
)
from runs.fingerprint import save_image_prefix, workflow_fingerprint
from runs.models import Run, Status
from runs.sync import max_run_time


@pytest.mark.django_db
def test_it_sets_up_the_demo_once(fake, django_user_model):
    admin = django_user_model.objects.create_superuser("admin", password="pw")
    provider = ensure_demo(fake.base_url("comfyui"))
    again = ensure_demo(fake.base_url("comfyui"))
    assert provider == again and provider.name == "Simulator" and provider.kind == "comfyui"
    org = Organization.objects.get(slug="demo")
    assert org.role_of(admin) == "owner" and org.providers.count() == 1
    with_cloud = ensure_demo(fake.base_url("comfyui"), fake.base_url("comfycloud"))
    assert with_cloud == provider and sorted(org.providers.values_list("name", "kind")) == [
        ("Simulator", "comfyui"),
        ("Simulator Cloud", "comfycloud"),
    ]
    prices = Price.objects.filter(provider__organization=org).order_by("per_gpu_second")
    assert list(prices.values_list("per_gpu_second", flat=True)) == [
        Decimal("0.0003"),
        Decimal("0.0011"),
    ]


@pytest.mark.django_db
def test_demo_runs_go_to_both_simulators_and_finish_on_each(fake, monkeypatch):
    simulator = ensure_demo(fake.base_url("comfyui"), fake.base_url("comfycloud"))
    monkeypatch.setattr("runs.demo.pick_outcome", lambda rng: "succeeded")
    rng = random.Random(5)
    runs = [submit_demo_run(simulator, fake.state, rng) for _ in range(12)]
    assert {run.provider.name for run in runs} == {"Simulator", "Simulator Cloud"}
    for run in runs:
        fake.state.get(run.provider.kind, run.external_id).force(RUNNING)
        sync_run_now(run)
        fake.state.get(run.provider.kind, run.external_id).force(SUCCEEDED)
        synced = sync_run_now(run)
        assert synced.status == Status.SUCCEEDED and synced.outputs.count() >= 1, synced.provider.name
        synced.refresh_from_db()
        assert synced.cost is not None and synced.cost_source == "estimated", synced.provider.name


def test_about_a_quarter_of_demo_runs_fail_in_every_way():
    rng = random.Random(7)
    outcomes = Counter(pick_outcome(rng) for _ in range(4000))
    refused = outcomes.pop("validation_error")
    runs = sum(outcomes.values())  # a refused submission leaves no run
    failed = 1 - outcomes["succeeded"] / runs
    assert FAILURE_RATE == 0.25 and 0.22 <= failed <= 0.28, failed
    assert 0.03 <= refused / 4000 <= 0.07
    assert set(outcomes) == {"succeeded", *FAILURES} and all(outcomes[kind] >= 50 for kind in FAILURES)


@pytest.fixture
def simulator(fake, monkeypatch):
    provider = ensure_demo(fake.base_url("comfyui"))
    prepare_simulator(fake.state)
    return provider


def _demo_run(simulator, fake, monkeypatch, outcome: str):
    monkeypatch.setattr("runs.demo.pick_outcome", lambda rng: outcome)
    return submit_demo_run(simulator, fake.state, random.Random(3))


@pytest.mark.django_db
def test_a_succeeding_demo_run_has_a_png(simulator, fake, monkeypatch):
    run = _demo_run(simulator, fake, monkeypatch, "succeeded")
    fake.state.get("comfyui", run.external_id).force(SUCCEEDED)
    run = sync_run_now(run)
    assert run.status == Status.SUCCEEDED and run.outputs.count() >= 1 and run.origin == "demo"


@pytest.mark.parametrize(
    "outcome, node_type, words",
    [
        ("out_of_memory", "KSampler", "CUDA out of memory"),
        ("missing_model", "CheckpointLoaderSimple", "No such file or directory"),
        ("node_exception", "VAEDecode", "to have 4 channels, but got 16"),
    ],
)
@pytest.mark.django_db
def test_failing_demo_runs_carry_the_node_error_real_ones_do(simulator, fake, monkeypatch, outcome, node_type, words):
    run = _demo_run(simulator, fake, monkeypatch, outcome)
    fake.state.get("comfyui", run.external_id).force(FAILED)
    run = sync_run_now(run)
    assert run.status == Status.FAILED and run.error["node_type"] == node_type and words in run.error["message"]
    assert "FakeFail" not in str(run.workflow)  # nothing in the demo's workflows gives the game away


@pytest.mark.django_db
def test_a_workflow_with_a_missing_custom_node_fails_validation_at_submission(simulator, fake, monkeypatch):
    with pytest.raises(SubmissionRejected, match="IPAdapterAdvanced does not exist"):
        _demo_run(simulator, fake, monkeypatch, "validation_error")
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_a_demo_run_that_never_finishes_is_timed_out_within_minutes(simulator, fake, monkeypatch):
    run = _demo_run(simulator, fake, monkeypatch, "timeout")
    script = fake.state.get("comfyui", run.external_id).script
    assert script[-1][1] == "running" and max_run_time(run).total_seconds() <= 300


@pytest.mark.django_db
def test_the_demo_is_off_without_debug(settings):
    settings.COMFYTRACK_DEMO = False
    with pytest.raises(CommandError, match="demo is off"):
        call_command("demo", count=1)


def test_demo_runs_rerun_two_workflows_with_new_seeds_and_prompts():
    rng = random.Random(11)
    workflows = [demo_workflow(rng) for _ in range(200)]
    fingerprints = Counter(workflow_fingerprint(w) for w in workflows)
    assert len(fingerprints) == len(TEMPLATES) == 2 and min(fingerprints.values()) >= 50
    assert len({w["3"]["inputs"]["seed"] for w in workflows}) > 190
    assert {save_image_prefix(w) for w in workflows} == set(TEMPLATES)
