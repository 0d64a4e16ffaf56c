"""ComfyDeploy end to end: the real client over loopback HTTP against the fake provider server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from providers.clients.base import ClientOptions, OutputRef, ProviderError, RunStatus
from providers.clients.comfydeploy import ComfyDeployClient
from providers.fake import state
from providers.fake.files import output_seed, url_expiry
from providers.fake.png import png_bytes
from providers.tests.e2e import fetch_now
from providers.tests.shared import error_of

KIND = "comfydeploy"


def make(fake: Any, secret: dict[str, str] | None = None, **options: Any) -> ComfyDeployClient:
    return ComfyDeployClient(
        fake.base_url(KIND),
        secret or fake.secret(KIND),
        {"deployment_id": "dep-e2e"},
        options=ClientOptions(**options),
    )


@pytest.fixture
def held(fake: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Submitted runs stay queued until a test moves them with run.force(phase)."""
    monkeypatch.setattr(fake.state, "default_script", ((0.0, state.QUEUED),))
    return fake


def download(client: ComfyDeployClient, output: OutputRef) -> bytes:
    request = client.download_request(output)
    status, _, body = fetch_now(request.url, request.headers)
    assert status == 200
    return body


def test_it_follows_a_run_from_submit_to_outputs(held: Any) -> None:
    client = make(held)
    run_id = client.call(client.submit, {}, {"prompt": "a cat"}, {})
    run = held.state.get(KIND, run_id)
    assert run.inputs == {"prompt": "a cat"}
    assert client.call(client.fetch, run_id).status == RunStatus.QUEUED
    run.force(state.RUNNING)
    running = client.call(client.fetch, run_id)
    assert (running.status, running.provider_status) == (RunStatus.RUNNING, "running")
    assert running.live_status == "Executing KSampler"
    run.force(state.SUCCEEDED)
    done = client.call(client.fetch, run_id)
    assert done.status == RunStatus.SUCCEEDED
    assert done.progress == 1.0
    assert done.created and done.queued and done.started and done.finished
    assert done.created <= done.queued <= done.started <= done.finished
    (output,) = done.outputs
    assert output.url_expires is not None
    assert output.filename == "ComfyUI_00001_.png"
    signed_until = url_expiry(output.url)
    assert signed_until is not None
    assert abs(output.url_expires.timestamp() - signed_until) <= 1
    assert output.url_expires > datetime.now(UTC)
    assert download(client, output) == png_bytes(output_seed(KIND, run_id, output.filename))


def test_it_reports_a_failed_run_with_the_node_type(held: Any) -> None:
    client = make(held)
    run_id = client.call(client.submit, {}, {"mode": "FakeFail"}, {})
    held.state.get(KIND, run_id).force(state.FAILED)
    snapshot = client.call(client.fetch, run_id)
    assert snapshot.status == RunStatus.FAILED
    assert error_of(snapshot).node_type == "KSampler"
    assert snapshot.outputs == ()


def test_it_cancels_a_run(held: Any) -> None:
    client = make(held)
    run_id = client.call(client.submit, {}, {}, {})
    client.call(client.cancel, run_id)
    assert client.call(client.fetch, run_id).status == RunStatus.CANCELLED


def test_it_reports_cancelling_an_unknown_run_as_permanent(fake: Any) -> None:
    client = make(fake)
    with pytest.raises(ProviderError) as caught:
        client.call(client.cancel, "no-such-run")
    assert caught.value.permanent


def test_it_returns_unknown_for_a_vanished_run(fake: Any) -> None:
    run = fake.add_run(KIND)
    run.force(state.VANISHED)
    client = make(fake)
    assert client.call(client.fetch, run.external_id).status == RunStatus.UNKNOWN


def test_it_flags_a_wrong_token(fake: Any) -> None:
    client = make(fake, secret={"token": "wrong"})
    with pytest.raises(ProviderError) as caught:
        client.call(client.check)
    assert caught.value.auth_failed
    assert "wrong" not in caught.value.message
    good = make(fake)
    assert "accepted" in good.call(good.check)


def test_it_reports_a_submission_without_deployment_as_permanent(fake: Any) -> None:
    client = ComfyDeployClient(fake.base_url(KIND), fake.secret(KIND))
    with pytest.raises(ProviderError, match="deployment_id"):
        client.call(client.submit, {}, {}, {})


@pytest.mark.parametrize("mode", ["5xx", "429", "malformed", "truncated", "html", "huge", "stall"])
def test_it_turns_every_fault_into_a_provider_error(fake: Any, mode: str) -> None:
    run = fake.add_run(KIND)
    run.force(state.RUNNING)
    client = make(fake, timeout=0.5)
    fake.set_faults(mode=mode, remaining=1, stall_seconds=2, retry_after=3)
    with pytest.raises(ProviderError) as caught:
        client.call(client.fetch, run.external_id)
    assert not caught.value.permanent
    if mode == "429":
        assert caught.value.retry_after == 3
    assert client.call(client.fetch, run.external_id).status == RunStatus.RUNNING


def test_it_sees_an_earlier_status_from_a_stale_replica(fake: Any) -> None:
    run = fake.add_run(KIND, script=[(0.0, state.QUEUED)])
    run.force(state.RUNNING)
    client = make(fake)
    fake.set_faults(mode="stale", remaining=1)
    assert client.call(client.fetch, run.external_id).status == RunStatus.QUEUED
    assert client.call(client.fetch, run.external_id).status == RunStatus.RUNNING
