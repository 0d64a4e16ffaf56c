"""AWS ESD client against the fake ESD API over real loopback HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from providers.clients.aws_esd import AwsEsdClient
from providers.clients.base import ProviderError, RunStatus
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

KIND = "aws_esd"


def make(fake, secret: dict | None = None) -> AwsEsdClient:
    return AwsEsdClient(fake.base_url(KIND), secret or fake.secret(KIND), {"endpoint_name": "comfy-async-fake"})


def test_it_follows_a_run_to_success_and_downloads_real_pngs(fake):
    client = make(fake)
    external_id = client.call(client.submit, recorded("workflow_minimal.json"), {}, {})
    assert client.call(client.fetch, external_id).status is RunStatus.QUEUED
    forced(fake, KIND, external_id, S.RUNNING, S.SUCCEEDED)
    snap = client.call(client.fetch, external_id)
    assert snap.finished is not None and snap.created is not None
    assert snap.status is RunStatus.SUCCEEDED and snap.finished >= snap.created
    [output] = snap.outputs
    assert output.url_expires is not None
    assert abs(output.url_expires - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(seconds=5)
    data = client.call(download, client, output)
    assert data.startswith(b"\x89PNG") and data == png_bytes(output_seed(KIND, external_id, output.filename))


def test_it_reports_a_failing_node(fake):
    client = make(fake)
    workflow = {"3": {"class_type": "FakeFail", "inputs": {}}}
    external_id = client.call(client.submit, workflow, {}, {})
    forced(fake, KIND, external_id, S.FAILED)
    snap = client.call(client.fetch, external_id)
    assert snap.status is RunStatus.FAILED and "CUDA out of memory" in error_of(snap).message


def test_it_reports_an_unknown_id_as_unknown(fake):
    client = make(fake)
    result = snapshots(client.call(client.fetch_many, ["no-such-prompt"]))
    assert result["no-such-prompt"].status is RunStatus.UNKNOWN


def test_it_flags_a_wrong_key(fake):
    client = make(fake, {"api_key": "wrong", "username": "api"})
    with pytest.raises(ProviderError) as caught:
        client.call(client.check)
    assert caught.value.auth_failed and "wrong" not in caught.value.message


def test_it_checks_a_good_key(fake):
    client = make(fake)
    assert "accepted" in client.call(client.check)


@pytest.mark.parametrize("mode", FAULTS)
def test_it_survives_fault(fake, mode):
    run = fake.add_run(KIND, script=((0, S.SUCCEEDED),))
    assert_fault_is_a_provider_error(fake, AwsEsdClient, run.external_id, mode)


def test_it_shows_a_stale_replicas_earlier_status(fake):
    run = fake.add_run(KIND, script=((0, S.QUEUED),))
    # ESD has no running state: the stale replica's earlier answer is `created`.
    assert_stale_answers_the_earlier_status(fake, AwsEsdClient, run.external_id, RunStatus.QUEUED)
