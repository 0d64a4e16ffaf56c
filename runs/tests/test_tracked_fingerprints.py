"""Runs tracked by id get their workflow fingerprint from what the provider reports: real loopback HTTP
against the fake provider server, then the compare API over the tracked runs."""

from __future__ import annotations

import pytest

from accounts.models import ApiKey
from providers.fake import state as S
from providers.tests.e2e import forced
from runs.fingerprint import workflow_fingerprint
from runs.models import Run, Status
from runs.tests.test_sync import provider_for, sweep, tracked

GRAPH = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 7, "steps": 20, "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "tracked-shots"}},
}
FP = workflow_fingerprint(GRAPH)
# Kinds whose API gives the graph a run executed, and the request that gives it to a tracked run.
GRAPH_KINDS = {
    "comfyui": {},  # /queue items and /history entries
    "comfycloud": {},  # v1 job detail `workflow.prompt`
    "comfycloud-v2": {"api": "v2"},  # GET /api/v2/jobs/{id}/workflow, `format: api`
    "aws_esd": {},  # `prompt_params.prompt`, Python's str() of the graph
}
NO_GRAPH_KINDS = ["comfydeploy", "speedpix"]  # the graph lives on the provider's deployment


def paths(fake, kind: str) -> list[str]:
    return [path.removeprefix(f"/{kind}") for k, _, path in fake.state.requests if k == kind]


@pytest.mark.parametrize("name", GRAPH_KINDS)
def test_it_fingerprints_a_tracked_run_from_the_providers_graph(org, make_provider, fake, name):
    kind = name.split("-")[0]
    provider = provider_for(org, make_provider, fake, kind, **GRAPH_KINDS[name])
    fake_run, run = tracked(fake, provider, script=((0.0, S.RUNNING),), workflow=GRAPH)
    sweep()
    forced(fake, kind, fake_run.external_id, S.SUCCEEDED)
    sweep()
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED
    assert run.workflow_fingerprint == FP
    assert run.workflow == GRAPH
    assert "ksampler" in run.search_text and "sdxl.safetensors" in run.search_text


@pytest.mark.parametrize("kind", NO_GRAPH_KINDS)
def test_it_leaves_a_run_without_a_fingerprint_where_the_provider_gives_no_graph(org, make_provider, fake, kind):
    provider = provider_for(org, make_provider, fake, kind)
    _, run = tracked(fake, provider, script=((0.0, S.SUCCEEDED),), workflow=GRAPH)
    sweep()
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED
    assert run.workflow_fingerprint == "" and run.workflow == {}


def test_it_asks_for_the_graph_once_when_a_list_call_finished_the_runs(org, make_provider, fake):
    """Six finished ComfyUI runs are answered from the jobs list, which leaves the graph out: one
    /history/{id} each gives it, and a later poll (there is none: they are finished) asks nothing more."""
    provider = provider_for(org, make_provider, fake, "comfyui")
    runs = [tracked(fake, provider, script=((0.0, S.SUCCEEDED),), workflow=GRAPH)[1] for _ in range(6)]
    fake.state.requests.clear()
    sweep()
    history_calls = [p for p in paths(fake, "comfyui") if "/history/" in p]
    assert len(history_calls) == 6
    assert set(Run.objects.filter(pk__in=[r.pk for r in runs]).values_list("workflow_fingerprint", flat=True)) == {FP}


def test_it_never_asks_for_the_graph_of_a_submitted_run(org, make_provider, fake, make_run):
    """Comfy API v2 serves the graph apart: a run submitted through comfytrack has its own, so no request."""
    provider = provider_for(org, make_provider, fake, "comfycloud", api="v2")
    fake_run = fake.add_run("comfycloud", script=((0.0, S.SUCCEEDED),), workflow=GRAPH)
    own = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8}}}
    run = make_run(provider, fake_run.external_id, workflow=own, status=Status.QUEUED)
    sweep()
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED
    assert run.workflow == own and run.workflow_fingerprint == workflow_fingerprint(own)
    assert not [p for p in paths(fake, "comfycloud") if p.endswith("/workflow")]


def test_a_tracked_run_appears_in_compare_next_to_a_submitted_one(client, org, alice, make_provider, fake):
    """Track by id through the API on two providers, sweep, and compare the workflow across them."""
    key = ApiKey.issue(org, "ci", created_by=alice)[1]
    headers = {"X-API-Key": key}
    comfyui = provider_for(org, make_provider, fake, "comfyui")
    cloud = provider_for(org, make_provider, fake, "comfycloud", api="v2")
    ids = {}
    for provider in (comfyui, cloud):
        fake_run = fake.add_run(provider.kind, script=((0.0, S.SUCCEEDED),), workflow=GRAPH)
        answer = client.post(
            "/api/v1/runs/track",
            {"provider": provider.name, "external_id": fake_run.external_id},
            content_type="application/json",
            headers=headers,
        )
        assert answer.status_code == 201, answer.content
        ids[provider.name] = answer.json()["id"]
    sweep()
    workflows = client.get("/api/v1/workflows", headers=headers).json()["items"]
    assert [(w["fingerprint"], w["runs"], w["name"]) for w in workflows] == [(FP, 2, "tracked-shots")]
    compared = client.get(f"/api/v1/workflows/{FP}/compare", headers=headers).json()
    assert sorted((p["name"], p["runs"], p["succeeded"]) for p in compared["providers"]) == sorted(
        [(comfyui.name, 1, 1), (cloud.name, 1, 1)]
    )
    detail = client.get(f"/api/v1/runs/{ids[cloud.name]}", headers=headers).json()
    assert detail["status"] == "succeeded"
