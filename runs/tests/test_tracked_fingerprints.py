"""Runs tracked by id get their workflow fingerprint from what the provider reports: real loopback HTTP
against the fake provider server. A graph the status answer carries is taken by the status sweep; one the
provider serves apart is asked for by the graph pass (runs.graphs), never by the sweep."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import ApiKey
from providers.fake import state as S
from providers.tests.e2e import forced
from runs.changes import RunChange, on_run_changes, remove_subscriber
from runs.fingerprint import workflow_fingerprint
from runs.graphs import LEASE, MAX_ATTEMPTS, claim_due_graphs, fetch_all_due_graphs, fetch_due_graphs
from runs.models import Run, Status
from runs.sync import sync_due_runs
from runs.tests.sync_helpers import provider_for, tracked
from webhooks.models import WebhookDelivery

GRAPH: dict[str, Any] = {
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


# Kinds whose list answer leaves a finished run's graph out, and the request that gives it apart.
APART = {
    "comfyui": ({}, "/history/{id}"),
    "comfycloud": ({}, "/api/jobs/{id}"),
    "comfycloud-v2": ({"api": "v2"}, "/api/v2/jobs/{id}/workflow"),
}


def status_sweep(now=None):
    """What the sync loop runs: statuses only (the graphs and the archive have a loop of their own)."""
    now = now or timezone.now()
    Run.objects.in_flight().update(next_sync_after=now)
    return sync_due_runs(now=now, archive=False)


def finished(fake, provider, n: int = 1, workflow=GRAPH) -> list[Run]:
    return [tracked(fake, provider, script=((0.0, S.SUCCEEDED),), workflow=workflow)[1] for _ in range(n)]


def v2(org, make_provider, fake):
    """Comfy API v2: every finished job's graph is served apart, whatever the number of runs."""
    return provider_for(org, make_provider, fake, "comfycloud", api="v2")


def graph_paths(fake) -> list[str]:
    return [p for p in paths(fake, "comfycloud") if p.endswith("/workflow")]


def graph_requests(fake, kind: str, runs) -> list[str]:
    wanted = {APART[name][1].format(id=run.external_id) for name in APART if name.startswith(kind) for run in runs}
    return [p for p in paths(fake, kind) if p in wanted]


@pytest.mark.parametrize("name", GRAPH_KINDS)
def test_it_fingerprints_a_tracked_run_from_the_providers_graph(org, make_provider, fake, name):
    kind = name.split("-")[0]
    provider = provider_for(org, make_provider, fake, kind, **GRAPH_KINDS[name])
    fake_run, run = tracked(fake, provider, script=((0.0, S.RUNNING),), workflow=GRAPH)
    status_sweep()
    forced(fake, kind, fake_run.external_id, S.SUCCEEDED)
    status_sweep()
    fetch_all_due_graphs()
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED
    assert run.workflow_fingerprint == FP
    assert run.workflow == GRAPH
    assert "ksampler" in run.search_text and "sdxl.safetensors" in run.search_text
    assert run.graph_due is None


@pytest.mark.parametrize("name", APART)
def test_the_status_sweep_asks_for_no_graph_and_the_graph_pass_does(org, make_provider, fake, name):
    """A run that finishes in the list answer: the sweep applies its status and marks its graph due, with
    no request for it; the graph pass then asks once and writes the workflow and fingerprint."""
    kind = name.split("-")[0]
    provider = provider_for(org, make_provider, fake, kind, **APART[name][0])
    # Enough runs for ComfyUI to read its jobs list (a few are asked /history/{id} each, graph included).
    runs = finished(fake, provider, 6)
    fake.state.requests.clear()
    before = timezone.now()
    status_sweep()
    assert paths(fake, kind) and not graph_requests(fake, kind, runs)
    for run in runs:
        run.refresh_from_db()
        assert run.status == Status.SUCCEEDED
        assert run.workflow_fingerprint == "" and run.workflow == {}
        assert run.graph_due is not None and before <= run.graph_due <= timezone.now() and run.graph_attempts == 0
    assert fetch_all_due_graphs() == 6
    assert sorted(graph_requests(fake, kind, runs)) == sorted(APART[name][1].format(id=r.external_id) for r in runs)
    for run in runs:
        run.refresh_from_db()
        assert run.workflow_fingerprint == FP and run.workflow == GRAPH and "ksampler" in run.search_text
        assert run.graph_due is None and run.graph_attempts == 1


@pytest.mark.parametrize("kind", NO_GRAPH_KINDS)
def test_it_leaves_a_run_without_a_fingerprint_where_the_provider_gives_no_graph(org, make_provider, fake, kind):
    """ComfyDeploy and SpeedPix have no call for a run's graph: nothing is marked due, nothing asked."""
    provider = provider_for(org, make_provider, fake, kind)
    _, run = tracked(fake, provider, script=((0.0, S.SUCCEEDED),), workflow=GRAPH)
    status_sweep()
    fake.state.requests.clear()
    assert fetch_all_due_graphs() == 0
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED
    assert run.workflow_fingerprint == "" and run.workflow == {} and run.graph_due is None
    assert paths(fake, kind) == []


def test_a_run_due_on_a_provider_without_the_call_is_settled_without_a_request(org, make_provider, fake):
    provider = provider_for(org, make_provider, fake, "comfydeploy")
    _, run = tracked(fake, provider, script=((0.0, S.SUCCEEDED),), workflow=GRAPH)
    status_sweep()
    Run.objects.filter(pk=run.pk).update(graph_due=timezone.now())
    fake.state.requests.clear()
    assert fetch_due_graphs().claimed == 1
    run.refresh_from_db()
    assert run.graph_due is None and run.graph_attempts == 1 and run.workflow_fingerprint == ""
    assert paths(fake, "comfydeploy") == []


def test_it_asks_for_the_graph_once_when_a_list_call_finished_the_runs(org, make_provider, fake):
    """Six finished ComfyUI runs are answered from the jobs list, which leaves the graph out: the graph
    pass asks /history/{id} once each, and a later pass (nothing is due any more) asks nothing."""
    provider = provider_for(org, make_provider, fake, "comfyui")
    runs = [tracked(fake, provider, script=((0.0, S.SUCCEEDED),), workflow=GRAPH)[1] for _ in range(6)]
    fake.state.requests.clear()
    status_sweep()
    assert [p for p in paths(fake, "comfyui") if "/history/" in p] == []
    assert fetch_all_due_graphs() == 6
    assert len([p for p in paths(fake, "comfyui") if "/history/" in p]) == 6
    assert set(Run.objects.filter(pk__in=[r.pk for r in runs]).values_list("workflow_fingerprint", flat=True)) == {FP}
    fake.state.requests.clear()
    assert fetch_all_due_graphs() == 0
    assert paths(fake, "comfyui") == []


def test_a_transient_failure_is_asked_again_after_a_back_off(org, make_provider, fake):
    (run,) = finished(fake, v2(org, make_provider, fake))
    status_sweep()
    fake.set_faults(mode="5xx", remaining=1, only_kind="comfycloud")
    now = timezone.now()
    outcome = fetch_due_graphs(now=now)
    assert (outcome.claimed, outcome.arrived) == (1, 0)
    run.refresh_from_db()
    assert run.workflow_fingerprint == "" and run.graph_attempts == 1
    assert run.graph_due is not None
    assert now + timedelta(seconds=29) <= run.graph_due <= now + timedelta(seconds=61)
    fake.state.requests.clear()
    assert fetch_due_graphs(now=now).claimed == 0  # not due yet: no request
    assert graph_paths(fake) == []
    assert fetch_due_graphs(now=run.graph_due).arrived == 1
    run.refresh_from_db()
    assert run.workflow_fingerprint == FP and run.graph_due is None and run.graph_attempts == 2


def test_a_batch_that_cannot_be_recorded_counts_an_attempt_and_ends(org, make_provider, fake):
    """A run-change subscriber that always raises rolls the batch back: each run still counts the attempt
    and backs off, so the batch is not claimed again every time its lease lapses, and stops at the last."""
    (run,) = finished(fake, v2(org, make_provider, fake))
    status_sweep()

    def broken(changes):
        raise RuntimeError("a subscriber's bug")

    subscriber = on_run_changes(broken)
    try:
        now = timezone.now()
        assert fetch_due_graphs(now=now).arrived == 0
        run.refresh_from_db()
        assert run.workflow_fingerprint == "" and run.graph_attempts == 1
        assert run.graph_due is not None
        assert now + timedelta(seconds=29) <= run.graph_due <= now + timedelta(seconds=61)
        Run.objects.filter(pk=run.pk).update(graph_attempts=MAX_ATTEMPTS - 1)
        assert fetch_due_graphs(now=run.graph_due).claimed == 1
    finally:
        remove_subscriber(subscriber)
    run.refresh_from_db()
    assert run.graph_due is None and run.graph_attempts == MAX_ATTEMPTS and run.workflow_fingerprint == ""


def test_it_gives_up_after_its_attempts(org, make_provider, fake):
    (run,) = finished(fake, v2(org, make_provider, fake))
    status_sweep()
    Run.objects.filter(pk=run.pk).update(graph_attempts=MAX_ATTEMPTS - 1)
    fake.set_faults(mode="5xx", remaining=1, only_kind="comfycloud")
    assert fetch_due_graphs().claimed == 1
    run.refresh_from_db()
    assert run.graph_due is None and run.graph_attempts == MAX_ATTEMPTS and run.workflow_fingerprint == ""


@pytest.mark.parametrize("gone", ["forgotten", "not api format"])
def test_a_permanent_answer_stops_asking(org, make_provider, fake, gone):
    """The provider no longer knows the run (404), or its graph is not one comfytrack can read."""
    workflow = GRAPH if gone == "forgotten" else {"nodes": [], "links": []}
    (run,) = finished(fake, v2(org, make_provider, fake), workflow=workflow)
    status_sweep()
    if gone == "forgotten":
        del fake.state.runs[("comfycloud", run.external_id)]
    fake.state.requests.clear()
    assert fetch_due_graphs().claimed == 1
    assert len(graph_paths(fake)) == 1
    run.refresh_from_db()
    assert run.graph_due is None and run.graph_attempts == 1 and run.workflow_fingerprint == ""
    fake.state.requests.clear()
    assert fetch_due_graphs(now=timezone.now() + timedelta(days=1)).claimed == 0
    assert graph_paths(fake) == []


def test_it_never_asks_for_the_graph_of_a_submitted_run(org, make_provider, fake, make_run):
    """Comfy API v2 serves the graph apart: a run submitted through comfytrack has its own, so no request."""
    provider = provider_for(org, make_provider, fake, "comfycloud", api="v2")
    fake_run = fake.add_run("comfycloud", script=((0.0, S.SUCCEEDED),), workflow=GRAPH)
    own = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8}}}
    run = make_run(provider, fake_run.external_id, workflow=own, status=Status.QUEUED)
    status_sweep()
    assert fetch_all_due_graphs() == 0
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED and run.graph_due is None
    assert run.workflow == own and run.workflow_fingerprint == workflow_fingerprint(own)
    assert not [p for p in paths(fake, "comfycloud") if p.endswith("/workflow")]


def test_it_never_asks_for_the_graph_of_a_lost_run(org, make_provider, fake):
    provider = provider_for(org, make_provider, fake, "comfycloud", api="v2", lost_after_minutes=1)
    _, run = tracked(fake, provider, script=((0.0, S.VANISHED),), workflow=GRAPH)
    now = timezone.now()
    status_sweep(now)
    status_sweep(now + timedelta(seconds=61))
    run.refresh_from_db()
    assert run.status == Status.LOST and run.graph_due is None
    fake.state.requests.clear()
    assert fetch_due_graphs(now=now + timedelta(days=1)).claimed == 0
    assert graph_paths(fake) == []


def test_two_workers_never_claim_the_same_run(org, make_provider, fake):
    finished(fake, v2(org, make_provider, fake), 5)
    status_sweep()
    first, second = claim_due_graphs(3), claim_due_graphs(3)
    assert len(first) == 3 and len(second) == 2
    assert not {r.pk for r in first} & {r.pk for r in second}
    assert claim_due_graphs(3) == []
    # A worker that died: its runs are due again once the lease lapses.
    later = timezone.now() + LEASE.length + timedelta(seconds=1)
    assert {r.pk for r in claim_due_graphs(10, now=later)} == {r.pk for r in first + second}


def test_an_arrived_graph_goes_to_the_run_change_hook_and_sends_no_webhook(org, make_provider, fake, alice):
    from webhooks.models import WebhookEndpoint

    WebhookEndpoint.objects.create(organization=org, url="https://example.com/hook", created_by=alice)
    (run,) = finished(fake, v2(org, make_provider, fake))
    status_sweep()
    deliveries = WebhookDelivery.objects.count()
    seen: list[RunChange] = []
    subscriber = on_run_changes(seen.extend)
    try:
        fetch_all_due_graphs()
    finally:
        remove_subscriber(subscriber)
    assert [(c.run.pk, c.status_changed, c.graph_arrived, c.new_output_keys) for c in seen] == [
        (run.pk, False, True, ())
    ]
    assert seen[0].run.workflow_fingerprint == FP
    assert WebhookDelivery.objects.count() == deliveries


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
    # What `sync_runs --once` does: the statuses, then the graphs (then the archive). ComfyUI answers one
    # run from /history/{id}, graph included; Comfy API v2 serves it apart.
    assert sync_due_runs().graphs == 1
    workflows = client.get("/api/v1/workflows", headers=headers).json()["items"]
    assert [(w["fingerprint"], w["runs"], w["name"]) for w in workflows] == [(FP, 2, "tracked-shots")]
    compared = client.get(f"/api/v1/workflows/{FP}/compare", headers=headers).json()
    assert sorted((p["name"], p["runs"], p["succeeded"]) for p in compared["providers"]) == sorted(
        [(comfyui.name, 1, 1), (cloud.name, 1, 1)]
    )
    detail = client.get(f"/api/v1/runs/{ids[cloud.name]}", headers=headers).json()
    assert detail["status"] == "succeeded"


def test_the_archive_loop_asks_for_the_graphs(org, make_provider, fake):
    """The scheduled after-finish loop (runs.tasks.archive_loop) runs the graph pass before archiving."""
    from runs.tasks import archive_loop

    (run,) = finished(fake, v2(org, make_provider, fake))
    status_sweep()
    assert archive_loop(seconds=1.0, idle_sleep=0.1) >= 1
    run.refresh_from_db()
    assert run.workflow_fingerprint == FP and run.graph_due is None


def test_a_rule_scoped_to_the_workflow_sees_the_run_when_its_graph_arrives(org, make_provider, fake):
    """A failed tracked run has no fingerprint when its status is applied: the provider-wide rule fires
    then, the workflow's rule once the graph arrives, and neither twice."""
    from alerts.models import Event, Rule

    by_provider = Rule.objects.create(organization=org, name="any", kind=Rule.Kind.RUN_FAILED)
    by_workflow = Rule.objects.create(organization=org, name="wf", kind=Rule.Kind.RUN_FAILED, workflows=[FP])
    other_workflow = Rule.objects.create(
        organization=org, name="other", kind=Rule.Kind.RUN_FAILED, workflows=["0123456789abcdef"]
    )
    _, run = tracked(fake, v2(org, make_provider, fake), script=((0.0, S.FAILED),), workflow=GRAPH)
    status_sweep()
    assert [e.rule_id for e in Event.objects.filter(run=run)] == [by_provider.pk]
    assert fetch_all_due_graphs() == 1
    assert sorted(e.rule_id for e in Event.objects.filter(run=run)) == sorted([by_provider.pk, by_workflow.pk])
    assert not Event.objects.filter(rule=other_workflow).exists()


@pytest.mark.parametrize("opened_before_it_finished", [True, False])
def test_a_late_graph_closes_only_an_incident_older_than_its_success(
    org, make_provider, fake, opened_before_it_finished
):
    """A success whose graph arrives later closes the workflow rule's incident only if the incident opened
    before the run finished: an older success says nothing about a failure seen since."""
    from alerts.models import Incident, Rule

    rule = Rule.objects.create(organization=org, name="wf", kind=Rule.Kind.RUN_FAILED, workflows=[FP])
    provider = v2(org, make_provider, fake)
    _, run = tracked(fake, provider, script=((0.0, S.SUCCEEDED),), workflow=GRAPH)
    status_sweep()
    run.refresh_from_db()
    assert run.finished is not None
    opened = run.finished + timedelta(minutes=-5 if opened_before_it_finished else 5)
    incident = Incident.objects.create(rule=rule, key=f"provider:{provider.pk}", title="wf", opened=opened)
    assert fetch_all_due_graphs() == 1
    incident.refresh_from_db()
    assert (incident.closed is not None) is opened_before_it_finished


def test_a_stalled_provider_ends_the_batch_at_its_deadline(org, make_provider, fake, monkeypatch):
    """One request hangs: the batch ends after BATCH_SECONDS, the answered run has its graph and the
    stalled one is asked again after a back-off."""
    import time

    import runs.graphs

    monkeypatch.setattr(runs.graphs, "BATCH_SECONDS", 1.0)
    runs_ = finished(fake, v2(org, make_provider, fake), 2)
    status_sweep()
    fake.set_faults(mode="stall", stall_seconds=8, remaining=1, only_kind="comfycloud")
    started = time.monotonic()
    outcome = fetch_due_graphs()
    assert time.monotonic() - started < 5
    assert (outcome.claimed, outcome.arrived) == (2, 1)
    for run in runs_:
        run.refresh_from_db()
    stalled = next(run for run in runs_ if not run.workflow_fingerprint)
    assert stalled.graph_attempts == 1 and stalled.graph_due is not None and stalled.graph_due > timezone.now()


def test_a_pass_ends_at_its_own_deadline_even_in_a_stalled_batch(org, make_provider, fake):
    """The archive loop gives the graphs a few seconds per pass: a stalled batch ends when they are up,
    not after BATCH_SECONDS."""
    import time

    finished(fake, v2(org, make_provider, fake), 2)
    status_sweep()
    fake.set_faults(mode="stall", stall_seconds=8, remaining=1, only_kind="comfycloud")
    started = time.monotonic()
    assert fetch_all_due_graphs(max_seconds=1.0) == 1
    assert time.monotonic() - started < 5
