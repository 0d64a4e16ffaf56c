"""runs.fingerprint: the same workflow with other seeds, prompts, files or overridden inputs has one
fingerprint; a different graph, model or setting has another. Stored on save and backfilled."""

from __future__ import annotations

import copy
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from providers.clients.base import RunSnapshot, RunStatus
from providers.fake.state import DEFAULT_SECRETS as SECRETS
from runs.backfill import fingerprint_runs
from runs.fingerprint import most_common_prefix, provider_graph, save_image_prefix, workflow_fingerprint
from runs.models import Origin, Run, Status

GRAPH: dict[str, Any] = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 25, "cfg": 7, "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["4", 1]}},
    "8": {"class_type": "LoadImage", "inputs": {"image": "upload_123.png"}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "fox"}, "_meta": {"title": "x"}},
}


def variant(**changes) -> dict:
    graph = copy.deepcopy(GRAPH)
    for path, value in changes.items():
        node, name = path.split("__")
        graph[node]["inputs"][name] = value
    return graph


def test_per_run_values_leave_the_fingerprint_alone():
    base = workflow_fingerprint(GRAPH)
    assert len(base) == 16 and int(base, 16) >= 0
    assert workflow_fingerprint(variant(**{"3__seed": 99, "6__text": "a blue cat", "8__image": "other.png"})) == base
    retitled = copy.deepcopy(GRAPH)
    retitled["9"]["_meta"] = {"title": "renamed"}
    assert workflow_fingerprint(retitled) == base


def test_overridden_inputs_leave_it_alone_in_every_shape():
    base = workflow_fingerprint(GRAPH, {"3.steps": 30})
    assert workflow_fingerprint(variant(**{"3__steps": 40}), {"3.steps": 30}) == base
    assert workflow_fingerprint(variant(**{"3__steps": 40}), {"3": {"steps": 30}}) == base
    external = {
        **GRAPH,
        "20": {"class_type": "ComfyUIDeployExternalText", "inputs": {"input_id": "style", "default_value": "x"}},
    }
    other = copy.deepcopy(external)
    other["20"]["inputs"]["default_value"] = "y"
    assert workflow_fingerprint(external, {"style": "z"}) == workflow_fingerprint(other, {"style": "w"})


def test_the_graph_models_and_settings_change_it():
    base = workflow_fingerprint(GRAPH)
    assert workflow_fingerprint(variant(**{"3__steps": 30})) != base
    assert workflow_fingerprint(variant(**{"4__ckpt_name": "flux.safetensors"})) != base
    rewired = variant(**{"3__model": ["8", 0]})
    assert workflow_fingerprint(rewired) != base
    assert workflow_fingerprint({**GRAPH, "10": {"class_type": "Upscale", "inputs": {}}}) != base


def test_it_is_empty_for_unknown_or_malformed_workflows():
    assert workflow_fingerprint({}) == "" and workflow_fingerprint(None) == ""
    assert workflow_fingerprint({"nodes": [], "links": []}) == ""
    assert workflow_fingerprint({"1": "not a node"}) == ""


def test_it_names_workflows_by_their_save_prefix():
    assert save_image_prefix(GRAPH) == "fox" and save_image_prefix({}) == ""
    assert most_common_prefix([GRAPH, GRAPH, variant(**{"9__filename_prefix": "cat"}), {}]) == "fox"


def test_runs_store_it_on_save_and_the_backfill_fills_old_ones(provider, make_run):
    run = make_run(provider, workflow=GRAPH, inputs={"6.text": "a wolf"})
    assert run.workflow_fingerprint == workflow_fingerprint(GRAPH, {"6.text": "a wolf"}) != ""
    tracked = make_run(provider)
    assert tracked.workflow_fingerprint == ""
    Run.objects.filter(pk=run.pk).update(workflow_fingerprint="")
    assert fingerprint_runs(Run) == 1
    assert Run.objects.get(pk=run.pk).workflow_fingerprint == run.workflow_fingerprint
    out = StringIO()
    call_command("fingerprint_runs", "--all", stdout=out)
    assert out.getvalue().strip() == "0 run(s) fingerprinted"


def test_a_providers_graph_is_stored_as_plain_json_with_its_fingerprint():
    graph = provider_graph(variant(**{"3__seed": 99}))
    assert graph is not None
    stored, fingerprint = graph
    assert fingerprint == workflow_fingerprint(GRAPH) and stored == variant(**{"3__seed": 99})


@pytest.mark.parametrize(
    "graph",
    [
        variant(**{"3__cfg": float("nan")}),  # jsonb refuses NaN and infinity
        variant(**{"3__cfg": float("inf")}),
        variant(**{"6__text": "a \x00 fox"}),  # jsonb refuses NUL
        variant(**{"6__text": {1, 2}}),  # not JSON at all
        variant(**{"6__text": "x" * 1_000_001}),  # too big to keep
        {"nodes": [], "links": []},  # the UI format
        {},
        None,
    ],
)
def test_a_providers_graph_it_cannot_store_gives_nothing(graph):
    assert provider_graph(graph) is None


def test_only_a_tracked_run_without_a_fingerprint_takes_the_providers_graph(provider, make_run):
    snapshot = RunSnapshot("x", RunStatus.RUNNING, "running", workflow=GRAPH)
    tracked = make_run(provider, "x", origin=Origin.TRACKED, status=Status.QUEUED)
    fields = tracked.snapshot_fields(snapshot, Status.RUNNING, tracked.created)
    assert fields["workflow"] == GRAPH and fields["workflow_fingerprint"] == workflow_fingerprint(GRAPH)
    assert "ksampler" in fields["search_text"]
    submitted = make_run(provider, "y", workflow=variant(**{"3__steps": 5}), status=Status.QUEUED)
    assert "workflow" not in submitted.snapshot_fields(snapshot, Status.RUNNING, submitted.created)
    tracked.workflow_fingerprint = "0123456789abcdef"  # taken once: a later answer changes nothing
    assert "workflow" not in tracked.snapshot_fields(snapshot, Status.RUNNING, tracked.created)


@pytest.mark.parametrize(
    ("kind", "origin", "status", "due"),
    [
        ("comfyui", Origin.TRACKED, Status.SUCCEEDED, True),
        ("comfycloud", Origin.TRACKED, Status.FAILED, True),
        ("comfyui", Origin.TRACKED, Status.CANCELLED, True),
        ("comfyui", Origin.TRACKED, Status.LOST, False),  # the provider does not know it
        ("comfyui", Origin.TRACKED, Status.TIMED_OUT, False),  # comfytrack's verdict, not the provider's
        ("comfyui", Origin.TRACKED, Status.RUNNING, False),  # asked once it finishes
        ("comfyui", Origin.API, Status.SUCCEEDED, False),  # submitted: it has its workflow
        ("comfydeploy", Origin.TRACKED, Status.SUCCEEDED, False),  # no call for a run's graph
    ],
)
def test_a_finished_tracked_run_without_its_graph_is_due_for_the_graph_pass(
    org, make_provider, make_run, kind, origin, status, due
):
    provider = make_provider(org, name=f"p-{kind}", kind=kind, base_url="http://127.0.0.1:1", secret=SECRETS[kind])
    run = make_run(provider, "x", origin=origin, status=Status.RUNNING)
    now = run.created
    fields = run.snapshot_fields(RunSnapshot("x", RunStatus(status.value), "done"), status, now)
    assert fields.get("graph_due") == (now if due else None)
    # A graph in the status answer is taken there: nothing left to ask for.
    with_graph = run.snapshot_fields(RunSnapshot("x", RunStatus(status.value), "done", workflow=GRAPH), status, now)
    assert with_graph.get("graph_due") is None
