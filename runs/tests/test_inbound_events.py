"""The inbound ComfyDeploy webhook: apply_comfydeploy_webhook and its view, with the shared fixtures."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from django.utils import timezone

import runs.inbound_events
from providers.fake import state as S
from providers.models import Provider
from providers.tests.e2e import forced
from providers.tests.shared import fixture
from runs.inbound_events import WebhookRejected, apply_comfydeploy_webhook
from runs.models import Run, RunEvent, Status

RUN_ID = "b5c9a0c4-3f1e-4a8e-9d0b-6d2f6a1e7c42"
RUNNING = fixture("comfydeploy/webhook_run_updated_running.json")
OUTPUT = fixture("comfydeploy/webhook_run_output.json")
SUCCESS = fixture("comfydeploy/webhook_run_updated_success.json")


@pytest.fixture
def provider(org, make_provider, fake):
    """A ComfyDeploy on the fake (over loopback): a webhook that ends a run makes one GET of it."""
    return make_provider(org, base_url=fake.base_url("comfydeploy"), secret=fake.secret("comfydeploy"))


@pytest.fixture
def hooked(provider, make_run):
    token = provider.issue_webhook_token()
    run = make_run(provider, RUN_ID, status=Status.QUEUED, next_sync_after=None)
    return provider, token, run


def url(provider: Provider, token: str) -> str:
    return f"/api/v1/hooks/comfydeploy/{provider.code}/{token}"


def post(client, provider, token, body):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(url(provider, token), data=data, content_type="application/json")


def events(run: Run) -> list[tuple[str, str, str]]:
    return list(RunEvent.objects.filter(run=run).values_list("from_status", "to_status", "source"))


def test_it_stores_only_a_hash_of_the_token(provider):
    token = provider.issue_webhook_token()
    provider.refresh_from_db()
    assert len(token) >= 40 and token not in provider.webhook_token_hash and len(provider.webhook_token_hash) == 64
    assert provider.check_webhook_token(token) and not provider.check_webhook_token(token + "x")
    again = provider.issue_webhook_token()
    provider.refresh_from_db()
    assert again != token and not provider.check_webhook_token(token)


def test_it_refuses_every_token_before_one_is_issued(provider):
    assert not provider.check_webhook_token("") and not provider.check_webhook_token("0" * 64)


def test_it_applies_updates_outputs_and_success(hooked):
    provider, token, run = hooked
    before = timezone.now()
    apply_comfydeploy_webhook(provider, token, RUNNING)
    run.refresh_from_db()
    assert run.status == Status.RUNNING and run.progress == 0.45 and run.live_status == "Executing KSampler"
    assert run.next_sync_after is not None and before <= run.next_sync_after <= timezone.now()  # poller confirms
    apply_comfydeploy_webhook(provider, token, OUTPUT)
    run.refresh_from_db()
    assert run.n_outputs == 1 and run.outputs.get().filename == "ComfyUI_00001_.png"
    apply_comfydeploy_webhook(provider, token, SUCCESS)
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED and run.n_outputs == 1 and run.finished
    assert events(run) == [("queued", "running", "webhook"), ("running", "succeeded", "webhook")]


def test_a_run_the_webhook_finishes_gets_the_providers_end_from_one_get(hooked, fake):
    """The body has no times: one GET of the run gives ComfyDeploy's `ended_at`, `gpu` and `duration`."""
    provider, token, run = hooked
    fake_run = fake.add_run("comfydeploy", RUN_ID, script=((0.0, S.QUEUED),))
    forced(fake, "comfydeploy", RUN_ID, S.RUNNING, S.SUCCEEDED)
    fake.state.requests.clear()
    apply_comfydeploy_webhook(provider, token, SUCCESS)
    run.refresh_from_db()
    ended = datetime.fromtimestamp(fake_run.finished_at(), UTC)
    assert run.status == Status.SUCCEEDED and run.time_source("finished") == "provider"
    assert abs((run.finished - ended).total_seconds()) < 0.002  # ComfyDeploy writes milliseconds
    assert run.gpu == "A10G" and run.gpu_seconds is not None
    assert [(m, p.rsplit("/", 1)[-1]) for _, m, p in fake.state.requests] == [("GET", RUN_ID)]
    assert events(run) == [("queued", "succeeded", "webhook")]


def test_a_run_the_webhook_finishes_keeps_an_observed_end_when_the_get_fails(hooked, fake):
    provider, token, run = hooked
    fake.add_run("comfydeploy", RUN_ID, script=((0.0, S.SUCCEEDED),))
    fake.set_faults(mode="5xx", only_kind="comfydeploy")
    before = timezone.now()
    apply_comfydeploy_webhook(provider, token, SUCCESS)
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED and run.time_source("finished") == "observed"
    assert before <= run.finished <= timezone.now() and run.gpu_seconds is None


def test_it_shrugs_off_duplicates_and_out_of_order_deliveries(hooked):
    provider, token, run = hooked
    for body in (SUCCESS, RUNNING, SUCCESS, OUTPUT, RUNNING):
        apply_comfydeploy_webhook(provider, token, body)
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED and run.n_outputs == 1
    assert events(run) == [("queued", "succeeded", "webhook")]


def test_it_ignores_a_run_it_does_not_track(provider):
    token = provider.issue_webhook_token()
    assert apply_comfydeploy_webhook(provider, token, {**RUNNING, "run_id": "someone-else"}) is None
    assert not Run.objects.exists()


def test_it_rejects_a_bad_token_and_a_bad_body(hooked):
    provider, token, run = hooked
    with pytest.raises(WebhookRejected) as caught:
        apply_comfydeploy_webhook(provider, "wrong", RUNNING)
    assert caught.value.status == 404
    with pytest.raises(WebhookRejected) as caught:
        apply_comfydeploy_webhook(provider, token, {"status": "running"})
    assert caught.value.status == 400 and "run_id" in caught.value.message
    run.refresh_from_db()
    assert run.status == Status.QUEUED and not events(run)


# -- the view ------------------------------------------------------------------------------------------


def test_it_answers_200_and_applies_through_the_url(client, hooked):
    provider, token, run = hooked
    response = post(client, provider, token, SUCCESS)
    assert response.status_code == 200 and response.json() == {"ok": True, "run": str(run.code)}
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED
    assert post(client, provider, token, SUCCESS).status_code == 200  # a redelivery
    assert len(events(run)) == 1


def test_it_answers_200_for_an_untracked_run(client, hooked):
    provider, token, _ = hooked
    response = post(client, provider, token, {**RUNNING, "run_id": "not-ours"})
    assert response.status_code == 200 and response.json()["run"] is None


def test_it_gives_the_same_404_for_an_unknown_provider_and_a_bad_token(client, hooked, org, make_provider):
    provider, token, run = hooked
    unknown = post(client, Provider(code=uuid.uuid4()), token, RUNNING)
    bad = post(client, provider, token[:-1] + ("A" if token[-1] != "A" else "B"), RUNNING)
    other = make_provider(org, name="Other")  # no token issued
    never = post(client, other, token, RUNNING)
    assert unknown.status_code == bad.status_code == never.status_code == 404
    assert unknown.content == bad.content == never.content
    run.refresh_from_db()
    assert run.status == Status.QUEUED


def test_it_only_serves_comfydeploy_providers(client, org, make_provider):
    other = make_provider(org, name="Local", kind="comfyui", base_url="http://127.0.0.1:8188", secret={})
    token = other.issue_webhook_token()
    assert post(client, other, token, RUNNING).status_code == 404


@pytest.mark.parametrize("body", ["{not json", "", '"a string"', '{"run_id": 3}', "[]"])
def test_it_answers_400_for_a_malformed_body(client, hooked, body):
    provider, token, run = hooked
    response = post(client, provider, token, body)
    assert response.status_code == 400 and response.json()["detail"]
    run.refresh_from_db()
    assert run.status == Status.QUEUED


def test_it_refuses_a_body_over_1_mb(client, hooked):
    provider, token, run = hooked
    body = json.dumps({**RUNNING, "live_status": "x" * (1024 * 1024)})
    assert post(client, provider, token, body).status_code == 413
    run.refresh_from_db()
    assert run.status == Status.QUEUED


def test_it_only_accepts_post_without_csrf(hooked):
    from django.test import Client

    provider, token, _ = hooked
    strict = Client(enforce_csrf_checks=True)
    assert strict.get(url(provider, token)).status_code == 405
    assert post(strict, provider, token, RUNNING).status_code == 200


def test_it_never_answers_500(client, hooked, monkeypatch):
    provider, token, _ = hooked

    def explode(*args, **kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(runs.inbound_events, "apply_snapshot", explode)
    response = post(client, provider, token, RUNNING)
    assert response.status_code == 503
