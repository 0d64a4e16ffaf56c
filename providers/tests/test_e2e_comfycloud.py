"""Comfy Cloud end to end (v1 and v2): the real client over loopback HTTP against the fake provider server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import pytest

from providers.clients.base import ClientOptions, OutputRef, ProviderError, RunStatus, Unsupported
from providers.clients.comfycloud import ComfyCloudClient
from providers.fake import state
from providers.fake.files import output_seed
from providers.fake.png import png_bytes
from providers.tests.e2e import fetch_now
from providers.tests.shared import error_of, fixture, snapshots

KIND = "comfycloud"
APIS = ["v1", "v2"]


def make(fake: Any, api: str = "v1", secret: dict[str, str] | None = None, **config: Any) -> ComfyCloudClient:
    timeout = config.pop("timeout", 15.0)
    return ComfyCloudClient(
        fake.base_url(KIND),
        secret or fake.secret(KIND),
        {"api": api, **config},
        options=ClientOptions(timeout=timeout),
    )


def workflow() -> dict[str, Any]:
    return fixture("comfy-cloud/prompt_request.json")["prompt"]


def failing_workflow() -> dict[str, Any]:
    return {**workflow(), "3": {"class_type": "FakeFail", "inputs": {}}}


@pytest.fixture
def held(fake: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Submitted runs stay queued until a test moves them with run.force(phase)."""
    monkeypatch.setattr(fake.state, "default_script", ((0.0, state.QUEUED),))
    return fake


def download(client: ComfyCloudClient, output: OutputRef) -> bytes:
    """What the archive does: first request with download_request, redirects followed without our key."""
    request = client.download_request(output)
    status, location, body = fetch_now(request.url, request.headers)
    if status in (301, 302, 303, 307, 308) and location:
        status, _, body = fetch_now(urljoin(request.url, location))
    assert status == 200
    return body


@pytest.mark.parametrize("api", APIS)
def test_it_follows_a_job_from_submit_to_outputs(held: Any, api: str) -> None:
    client = make(held, api)
    job_id = client.call(client.submit, workflow(), {"2.filename_prefix": "e2e"}, {})
    run = held.state.get(KIND, job_id)
    assert run.workflow["2"]["inputs"]["filename_prefix"] == "e2e"
    assert client.call(client.fetch, job_id).status == RunStatus.QUEUED
    run.force(state.RUNNING)
    assert client.call(client.fetch, job_id).status == RunStatus.RUNNING
    run.force(state.SUCCEEDED)
    done = client.call(client.fetch, job_id)
    assert done.status == RunStatus.SUCCEEDED
    assert done.created and done.started and done.finished
    assert done.created <= done.started <= done.finished
    (output,) = done.outputs
    assert output.filename == "ComfyUI_00001_.png"
    assert download(client, output) == png_bytes(output_seed(KIND, job_id, output.filename))
    if api == "v2":
        assert output.url_expires and output.url_expires > datetime.now(UTC)


def test_it_resolves_a_v1_view_url_to_a_signed_url_that_needs_no_key(fake: Any) -> None:
    run = fake.add_run(KIND, script=[(0.0, state.SUCCEEDED)])
    client = make(fake)
    (output,) = client.call(client.fetch, run.external_id).outputs
    signed = client.call(client.resolve_download, output)
    assert signed != output.url
    assert fetch_now(signed)[2] == png_bytes(output_seed(KIND, run.external_id, output.filename))


@pytest.mark.parametrize("api", APIS)
def test_it_reports_the_node_error_of_a_failed_job(held: Any, api: str) -> None:
    client = make(held, api)
    job_id = client.call(client.submit, failing_workflow(), {}, {})
    held.state.get(KIND, job_id).force(state.FAILED)
    snapshot = client.call(client.fetch, job_id)
    assert snapshot.status == RunStatus.FAILED
    error = error_of(snapshot)
    assert (error.node_id, error.node_type) == ("3", "KSampler")
    assert "CUDA out of memory" in error.message
    assert "nodes.py" in (error.traceback or "")


@pytest.mark.parametrize("api", APIS)
def test_it_names_invalid_nodes_on_submit(fake: Any, api: str) -> None:
    client = make(fake, api)
    with pytest.raises(ProviderError) as caught:
        client.call(client.submit, {**workflow(), "5": {"inputs": {}}}, {}, {})
    assert caught.value.permanent
    assert "node 5" in caught.value.message


def test_it_rejects_a_reused_idempotency_key(fake: Any) -> None:
    client = make(fake, "v2")
    client.call(client.submit, workflow(), {}, {"idempotency_key": "once"})
    with pytest.raises(ProviderError) as caught:
        client.call(client.submit, workflow(), {}, {"idempotency_key": "once"})
    assert caught.value.permanent
    assert "Idempotency-Key" in caught.value.message


def test_it_cancels_a_pending_v1_job(held: Any) -> None:
    client = make(held)
    job_id = client.call(client.submit, workflow(), {}, {})
    client.call(client.cancel, job_id)
    assert client.call(client.fetch, job_id).status == RunStatus.CANCELLED


def test_it_refuses_to_interrupt_a_running_v1_job_by_default(held: Any) -> None:
    client = make(held)
    mine, other = (held.add_run(KIND, script=[(0.0, state.RUNNING)]) for _ in range(2))
    with pytest.raises(Unsupported):
        client.call(client.cancel, mine.external_id)
    assert other.phase() == state.RUNNING
    allowed = make(held, allow_global_interrupt=True)
    allowed.call(allowed.cancel, mine.external_id)
    assert allowed.call(allowed.fetch, mine.external_id).status == RunStatus.CANCELLED


def test_it_cancels_a_running_v2_job(held: Any) -> None:
    client = make(held, "v2")
    job_id = client.call(client.submit, workflow(), {}, {})
    held.state.get(KIND, job_id).force(state.RUNNING)
    client.call(client.cancel, job_id)
    snapshot = client.call(client.fetch, job_id)
    assert (snapshot.status, snapshot.provider_status) == (RunStatus.CANCELLED, "canceled")


def test_it_fetches_many_v1_jobs_with_list_calls(fake: Any) -> None:
    in_flight = [fake.add_run(KIND, script=[(0.0, phase)]) for phase in (state.QUEUED, state.RUNNING, state.RUNNING)]
    finished = fake.add_run(KIND, script=[(0.0, state.SUCCEEDED)])
    gone = fake.add_run(KIND, script=[(0.0, state.VANISHED)])
    ids = [r.external_id for r in [*in_flight, finished, gone]]
    fake.state.requests.clear()
    client = make(fake)
    results = snapshots(client.call(client.fetch_many, ids))
    paths = [path for kind, _, path in fake.state.requests if kind == KIND]
    # In flight, then finished: the finished job is in the second list; only the vanished one is asked alone.
    assert paths == ["/comfycloud/api/jobs", "/comfycloud/api/jobs", f"/comfycloud/api/jobs/{gone.external_id}"]
    statuses = [results[i].status for i in ids]
    expected = [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.UNKNOWN]
    assert statuses == expected
    # The list's output is exactly what the job's own detail shows.
    assert results[finished.external_id].outputs == client.call(client.fetch, finished.external_id).outputs
    assert len(results[finished.external_id].outputs) == 1


@pytest.mark.parametrize("api", APIS)
def test_it_flags_a_wrong_key(fake: Any, api: str) -> None:
    client = make(fake, api, secret={"api_key": "wrong-key"})
    with pytest.raises(ProviderError) as caught:
        client.call(client.check)
    assert caught.value.auth_failed
    assert "wrong-key" not in caught.value.message
    good = make(fake, api)
    assert "accepted" in good.call(good.check)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("mode", ["5xx", "429", "malformed", "truncated", "html", "huge", "stall"])
def test_it_turns_every_fault_into_a_provider_error(fake: Any, api: str, mode: str) -> None:
    run = fake.add_run(KIND, script=[(0.0, state.RUNNING)])
    client = make(fake, api, timeout=0.5)
    fake.set_faults(mode=mode, remaining=1, stall_seconds=2)
    with pytest.raises(ProviderError) as caught:
        client.call(client.fetch, run.external_id)
    assert not caught.value.permanent
    assert client.call(client.fetch, run.external_id).status == RunStatus.RUNNING


def test_it_reports_a_failed_list_call_for_every_job(fake: Any) -> None:
    runs = [fake.add_run(KIND) for _ in range(3)]
    fake.set_faults(mode="5xx", remaining=1)
    client = make(fake)
    results = client.call(client.fetch_many, [r.external_id for r in runs])
    assert all(isinstance(result, ProviderError) for result in results.values())


@pytest.mark.parametrize("api", APIS)
def test_it_sees_an_earlier_status_from_a_stale_replica(fake: Any, api: str) -> None:
    run = fake.add_run(KIND, script=[(0.0, state.RUNNING)])
    run.force(state.SUCCEEDED)
    client = make(fake, api)
    fake.set_faults(mode="stale", remaining=1)
    assert client.call(client.fetch, run.external_id).status == RunStatus.RUNNING
    assert client.call(client.fetch, run.external_id).status == RunStatus.SUCCEEDED
