"""ComfyUI client against the fake ComfyUI over real loopback HTTP."""

from __future__ import annotations

import pytest

from providers.clients.base import ProviderError, RunStatus
from providers.clients.comfyui import ComfyUIClient
from providers.fake import state as S
from providers.fake.files import output_seed
from providers.fake.png import png_bytes
from providers.tests.e2e import (
    FAULTS,
    assert_fault_is_a_provider_error,
    assert_stale_answers_the_earlier_status,
    download,
    forced,
)
from providers.tests.shared import error_of, recorded, snapshots

KIND = "comfyui"


def make(fake, secret: dict | None = None) -> ComfyUIClient:
    return ComfyUIClient(fake.base_url(KIND), fake.secret(KIND) if secret is None else secret)


def submit(fake, workflow: dict | None = None) -> tuple[ComfyUIClient, str]:
    client = make(fake)
    return client, client.call(client.submit, workflow or recorded("workflow_minimal.json"), {}, {})


def test_it_follows_a_run_to_success_and_downloads_real_pngs(fake):
    client, external_id = submit(fake)
    assert client.call(client.fetch, external_id).status is RunStatus.QUEUED
    forced(fake, KIND, external_id, S.RUNNING)
    assert client.call(client.fetch, external_id).status is RunStatus.RUNNING
    forced(fake, KIND, external_id, S.SUCCEEDED)
    snap = client.call(client.fetch, external_id)
    assert snap.started is not None and snap.finished is not None
    assert snap.status is RunStatus.SUCCEEDED and snap.started <= snap.finished
    [output] = snap.outputs
    data = client.call(download, client, output)
    assert data.startswith(b"\x89PNG") and data == png_bytes(output_seed(KIND, external_id, output.filename))


def test_it_reports_a_failing_node(fake):
    workflow = {"1": {"class_type": "EmptyImage", "inputs": {}}, "5": {"class_type": "FakeFail", "inputs": {}}}
    client, external_id = submit(fake, workflow)
    forced(fake, KIND, external_id, S.RUNNING, S.FAILED)
    snap = client.call(client.fetch, external_id)
    assert snap.status is RunStatus.FAILED
    error = error_of(snap)
    assert (error.node_id, error.node_type) == ("5", "FakeFail") and "CUDA" in error.message
    assert error.traceback is not None and "execution.py" in error.traceback


def test_it_rejects_an_unknown_node_class(fake):
    client = make(fake)
    with pytest.raises(ProviderError, match="NoSuchNode") as caught:
        client.call(client.submit, {"1": {"class_type": "NoSuchNode", "inputs": {}}}, {}, {})
    assert caught.value.permanent and not fake.state.of_kind(KIND)


@pytest.mark.parametrize("phase", [S.QUEUED, S.RUNNING])
def test_it_cancels_pending_and_running_prompts(fake, phase):
    client, external_id = submit(fake)
    forced(fake, KIND, external_id, phase)
    client.call(client.cancel, external_id)
    assert client.call(client.fetch, external_id).status is RunStatus.CANCELLED


def test_it_reports_an_id_in_neither_queue_nor_history_as_unknown(fake):
    client, external_id = submit(fake)
    forced(fake, KIND, external_id, S.VANISHED)
    answers = snapshots(client.call(client.fetch_many, [external_id, "00000000-0000-4000-8000-000000000000"]))
    assert {s.status for s in answers.values()} == {RunStatus.UNKNOWN}


@pytest.mark.parametrize("jobs_api", [True, False], ids=["recent-build", "build-without-api-jobs"])
def test_it_fetches_many_runs_in_every_state(fake, jobs_api):
    fake.state.comfyui_jobs_api = jobs_api
    client = make(fake)
    phases = ((S.QUEUED, 3), (S.RUNNING, 1), (S.SUCCEEDED, 6), (S.FAILED, 1), (S.CANCELLED, 1))
    ids = {
        phase: [fake.add_run(KIND, script=((0, S.RUNNING), (0, phase)), workflow={}).external_id for _ in range(count)]
        for phase, count in phases
    }
    fake.state.requests.clear()
    result = snapshots(client.call(client.fetch_many, [i for group in ids.values() for i in group]))
    assert [result[i].status for i in ids[S.QUEUED]] == [RunStatus.QUEUED] * 3
    assert {result[i].queue_position for i in ids[S.QUEUED]} == {0, 1, 2}  # three runs, three places
    assert {result[i].status for i in ids[S.SUCCEEDED]} == {RunStatus.SUCCEEDED}
    paths = [path.removeprefix("/comfyui") for kind, _, path in fake.state.requests if kind == KIND]
    # Recent builds: the jobs list, and the interrupted run's own history (it names the node it stopped at).
    expected = (
        ["/queue", "/api/jobs", f"/history/{ids[S.CANCELLED][0]}"] if jobs_api else ["/queue", "/api/jobs", "/history"]
    )
    assert paths == expected
    # Whichever list answered, each finished run reads exactly as its own history says.
    for external_id in [*ids[S.SUCCEEDED], *ids[S.FAILED], *ids[S.CANCELLED]]:
        alone = client.call(client.fetch, external_id)
        listed = result[external_id]
        assert (listed.status, listed.outputs, listed.error, listed.started, listed.finished, listed.live_status) == (
            alone.status,
            alone.outputs,
            alone.error,
            alone.started,
            alone.finished,
            alone.live_status,
        )


def test_it_flags_a_wrong_proxy_secret(fake):
    fake.state.secrets[KIND] = {"header": "X-Proxy-Token", "value": "right"}
    try:
        client = make(fake, {"header": "X-Proxy-Token", "value": "wrong"})
        with pytest.raises(ProviderError) as caught:
            client.call(client.check)
        assert caught.value.auth_failed
        right = make(fake, {"header": "X-Proxy-Token", "value": "right"})
        assert "ComfyUI" in right.call(right.check)
    finally:
        fake.state.secrets[KIND] = {}


@pytest.mark.parametrize("mode", FAULTS)
def test_it_survives_fault(fake, mode):
    run = fake.add_run(KIND, script=((0, S.SUCCEEDED),), workflow={})
    assert_fault_is_a_provider_error(fake, ComfyUIClient, run.external_id, mode)


def test_it_shows_a_stale_replicas_earlier_status(fake):
    run = fake.add_run(KIND, script=((0, S.QUEUED),), workflow={})
    assert_stale_answers_the_earlier_status(fake, ComfyUIClient, run.external_id)
