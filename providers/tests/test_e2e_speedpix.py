"""SpeedPix client against the fake, signature-verifying SpeedPix gateway over real loopback HTTP."""

from __future__ import annotations

import pytest

from providers.clients.base import ProviderError, RunStatus
from providers.clients.speedpix import SpeedPixClient
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
from providers.tests.shared import error_of

KIND = "speedpix"


def make(fake, secret: dict | None = None, workflow_id: str = "wf-fake") -> SpeedPixClient:
    return SpeedPixClient(fake.base_url(KIND), secret or fake.secret(KIND), {"workflow_id": workflow_id})


def test_it_follows_a_task_to_success_and_downloads_real_pngs(fake):
    client = make(fake)
    task_id = client.call(client.submit, {}, {"prompt": "一只猫", "steps": 4}, {})
    assert fake.state.get(KIND, task_id).inputs == {"prompt": "一只猫", "steps": 4}
    assert client.call(client.fetch, task_id).status is RunStatus.QUEUED
    forced(fake, KIND, task_id, S.RUNNING)
    running = client.call(client.fetch, task_id)
    assert running.progress is not None
    assert running.status is RunStatus.RUNNING and 0 <= running.progress < 1
    forced(fake, KIND, task_id, S.SUCCEEDED)
    snap = client.call(client.fetch, task_id)
    assert snap.started is not None and snap.finished is not None
    assert snap.status is RunStatus.SUCCEEDED and snap.started <= snap.finished
    [output] = snap.outputs
    assert (output.width, output.height) == (64, 64) and output.url_expires is not None
    data = client.call(download, client, output)
    assert data.startswith(b"\x89PNG") and data == png_bytes(output_seed(KIND, task_id, output.filename))


def test_it_reports_a_failing_task_with_its_node_error(fake):
    client = make(fake, workflow_id="FakeFail")
    task_id = client.call(client.submit, {}, {}, {})
    forced(fake, KIND, task_id, S.RUNNING, S.FAILED)
    snap = client.call(client.fetch, task_id)
    assert snap.status is RunStatus.FAILED
    assert "FakeFail (node 1)" in error_of(snap).message and "TASK_FAILED" in error_of(snap).message


def test_it_maps_a_cancelled_task(fake):
    run = fake.add_run(KIND, script=((0, S.CANCELLED),))
    client = make(fake)
    assert client.call(client.fetch, run.external_id).status is RunStatus.CANCELLED


def test_it_reports_an_unknown_task_as_unknown(fake):
    client = make(fake)
    assert client.call(client.fetch, "0" * 32).status is RunStatus.UNKNOWN


@pytest.mark.parametrize(
    "secret",
    [
        {"app_key": "sp-fake-app-key", "app_secret": "wrong-secret"},
        {"app_key": "someone-else", "app_secret": "sp-fake-app-secret"},
    ],
)
def test_it_flags_a_wrong_key_or_secret(fake, secret):
    client = make(fake, secret)
    with pytest.raises(ProviderError) as caught:
        client.call(client.check)
    assert caught.value.auth_failed and caught.value.permanent
    assert "wrong-secret" not in caught.value.message and "sp-fake-app-key" not in caught.value.message


def test_it_passes_the_check_with_the_right_pair(fake):
    client = make(fake)
    assert "accepted" in client.call(client.check)


@pytest.mark.parametrize("mode", FAULTS)
def test_it_survives_fault(fake, mode):
    run = fake.add_run(KIND, script=((0, S.SUCCEEDED),))
    assert_fault_is_a_provider_error(fake, SpeedPixClient, run.external_id, mode)


def test_it_shows_a_stale_replicas_earlier_status(fake):
    run = fake.add_run(KIND, script=((0, S.QUEUED),))
    assert_stale_answers_the_earlier_status(fake, SpeedPixClient, run.external_id)
