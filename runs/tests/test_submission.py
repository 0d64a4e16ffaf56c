"""submit_run against the fake provider server over real loopback HTTP."""

from __future__ import annotations

import pytest
from django.utils import timezone

from providers.clients.base import SubmissionRejected
from providers.fake import state as S
from providers.tests.shared import recorded
from runs.models import Origin, Run, RunEvent, Status
from runs.submission import submit_run
from runs.sync import sync_due_runs


def provider_for(org, make_provider, fake, kind, secret=None, **config):
    return make_provider(
        org,
        name=kind,
        kind=kind,
        base_url=fake.base_url(kind),
        secret=fake.secret(kind) if secret is None else secret,
        config=config,
    )


@pytest.fixture
def workflow():
    return recorded("workflow_minimal.json")


@pytest.mark.parametrize("kind", ["comfyui", "comfycloud"])
def test_it_submits_a_run_that_is_due_at_once_and_syncs(org, alice, make_provider, fake, kind, workflow):
    provider = provider_for(org, make_provider, fake, kind)
    before = timezone.now()
    run = submit_run(provider, workflow, {}, origin=Origin.DASHBOARD, created_by=alice)
    run.refresh_from_db()
    assert run.status == Status.PENDING and run.external_id and run.created_by == alice
    assert run.next_sync_after is not None
    assert before <= run.next_sync_after <= timezone.now() and run.workflow == workflow
    fake_run = fake.state.get(kind, run.external_id)
    assert fake_run is not None and fake_run.workflow

    fake_run.force(S.RUNNING)
    assert sync_due_runs().claimed == 1
    run.refresh_from_db()
    assert run.status == Status.RUNNING


def test_it_submits_a_comfydeploy_deployment_run(org, make_provider, fake):
    provider = provider_for(org, make_provider, fake, "comfydeploy", deployment_id="dep-1")
    run = submit_run(provider, {}, {"prompt": "a cat"}, origin=Origin.API)
    fake_run = fake.state.get("comfydeploy", run.external_id)
    assert fake_run.workflow == {"deployment_id": "dep-1"} and fake_run.inputs == {"prompt": "a cat"}


@pytest.mark.parametrize(
    ("kind", "graph", "expected", "field"),
    [
        ("comfyui", {"1": {"class_type": "NoSuchNode", "inputs": {}}}, "NoSuchNode", "1"),
        ("comfycloud", {"5": {"inputs": {}}}, "node 5", "5"),
    ],
)
def test_a_workflow_the_provider_refuses_leaves_no_run(org, make_provider, fake, kind, graph, expected, field):
    provider = provider_for(org, make_provider, fake, kind)
    with pytest.raises(SubmissionRejected) as caught:
        submit_run(provider, graph, {}, origin=Origin.API, idempotency_key="k-1")
    assert expected in caught.value.message and caught.value.problems[0].field == field
    # Nothing started and nothing recorded: the same key may be used again for the corrected workflow.
    assert not Run.objects.exists() and not RunEvent.objects.exists()
    assert not fake.state.of_kind(kind)


@pytest.mark.parametrize("mode", ["5xx", "html", "stall"])
def test_it_records_a_failed_submission_instead_of_raising(org, make_provider, fake, mode, workflow):
    provider = provider_for(org, make_provider, fake, "comfyui", timeout_seconds=0.3)
    fake.set_faults(mode=mode, stall_seconds=1.0)
    run = submit_run(provider, workflow, {}, origin=Origin.DASHBOARD)
    run.refresh_from_db()
    assert run.status == Status.FAILED and run.error["message"].startswith("comfyui did not accept the run: ")
    assert run.next_sync_after is None and Run.objects.count() == 1


def test_it_records_a_refused_credential_without_the_secret(org, make_provider, fake, workflow):
    secret = {"api_key": "cc-wrong-key-0123456789"}
    provider = provider_for(org, make_provider, fake, "comfycloud", secret=secret)
    run = submit_run(provider, workflow, {}, origin=Origin.API)
    assert run.status == Status.FAILED and "401" in run.error["message"]
    assert secret["api_key"] not in run.error["message"]


def test_it_is_idempotent_per_key(org, make_provider, fake, workflow):
    provider = provider_for(org, make_provider, fake, "comfyui")
    first = submit_run(provider, workflow, {}, origin=Origin.API, idempotency_key="order-42")
    again = submit_run(provider, workflow, {}, origin=Origin.API, idempotency_key="order-42")
    other = submit_run(provider, workflow, {}, origin=Origin.API, idempotency_key="order-43")
    assert again.pk == first.pk and other.pk != first.pk
    assert len(fake.state.of_kind("comfyui")) == 2 and Run.objects.count() == 2


def test_it_refuses_a_tracked_origin(org, make_provider, fake, workflow):
    provider = provider_for(org, make_provider, fake, "comfyui")
    with pytest.raises(ValueError, match="origin"):
        submit_run(provider, workflow, {}, origin=Origin.TRACKED)
    assert not Run.objects.exists()
