"""Run detail: timeline, error, workflow inspector, events, outputs; cancel / retry / sync by role."""

from __future__ import annotations

from providers.fake.state import QUEUED, RUNNING, SUCCEEDED
from runs.models import Origin, Run, RunEvent, Status
from runs.submission import submit_run

WORKFLOW = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 20, "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk"}},
}


def test_it_shows_the_run(client, alice, provider, make_run):
    run = make_run(
        provider,
        "detail-run",
        status=Status.FAILED,
        provider_status="error",
        workflow=WORKFLOW,
        error={"message": "CUDA OOM", "node_id": "3", "node_type": "KSampler", "traceback": "Traceback: line 1"},
    )
    RunEvent.objects.create(run=run, source="webhook", from_status="running", to_status="failed")
    client.force_login(alice)
    content = client.get(f"/runs/{run.code}/").content.decode()
    for text in ["CUDA OOM", "KSampler", "Traceback: line 1", "a lighthouse at dusk", "sdxl.safetensors", "Webhook"]:
        assert text in content, text
    assert "<code>error</code>" in content  # the provider's raw status
    assert "hx-trigger" not in content  # finished: nothing polls


def test_viewers_see_no_action_buttons_and_cannot_post(client, bob, provider, make_run):
    run = make_run(provider, status=Status.RUNNING, workflow=WORKFLOW)
    client.force_login(bob)
    content = client.get(f"/runs/{run.code}/").content.decode()
    assert "Cancel run" not in content and "Retry" not in content and "Sync now" not in content
    for action in ("cancel", "retry", "sync"):
        assert client.post(f"/runs/{run.code}/{action}/").status_code == 403
    run.refresh_from_db()
    assert run.status == Status.RUNNING


def test_actions_need_post(client, alice, provider, make_run):
    run = make_run(provider, status=Status.RUNNING)
    client.force_login(alice)
    for action in ("cancel", "retry", "sync"):
        assert client.get(f"/runs/{run.code}/{action}/").status_code == 405


def test_it_cancels_a_run(client, alice, local, fake):
    fake.state.default_script = ((0.0, QUEUED),)
    run = submit_run(local, WORKFLOW, origin=Origin.API)
    client.force_login(alice)
    assert b"Cancel run" in client.get(f"/runs/{run.code}/").content
    response = client.post(f"/runs/{run.code}/cancel/", follow=True)
    assert b"Cancel requested" in response.content
    run.refresh_from_db()
    assert run.status == Status.CANCELLED


def test_cancelling_a_finished_run_says_why(client, alice, provider, make_run):
    run = make_run(provider, status=Status.SUCCEEDED)
    client.force_login(alice)
    response = client.post(f"/runs/{run.code}/cancel/", follow=True)
    assert response.status_code == 200 and b"nothing to cancel" in response.content


def test_it_retries_on_another_provider(client, alice, org, local, fake, make_provider):
    fake.state.default_script = ((0.0, SUCCEEDED),)
    original = submit_run(local, WORKFLOW, origin=Origin.API)
    other = make_provider(org, name="Other", kind="comfyui", base_url=fake.base_url("comfyui"), secret={})
    client.force_login(alice)
    response = client.post(f"/runs/{original.code}/retry/", {"provider": str(other.code)})
    retry = Run.objects.get(retry_of=original)
    assert response["Location"] == f"/runs/{retry.code}/" and retry.provider == other


def test_retry_of_a_tracked_run_explains(client, alice, provider, make_run):
    run = make_run(provider, status=Status.FAILED)
    client.force_login(alice)
    assert b"no workflow to submit" in client.post(f"/runs/{run.code}/retry/", follow=True).content


def test_it_syncs_now(client, alice, local, fake):
    fake.state.default_script = ((0.0, RUNNING),)
    run = submit_run(local, WORKFLOW, origin=Origin.API)
    client.force_login(alice)
    client.post(f"/runs/{run.code}/sync/")
    run.refresh_from_db()
    assert run.status == Status.RUNNING


def test_the_live_fragment_polls_and_reloads_when_finished(client, alice, provider, make_run):
    run = make_run(provider, status=Status.RUNNING)
    client.force_login(alice)
    fragment = client.get(f"/runs/{run.code}/live/?was=running")
    assert fragment.status_code == 200 and b"hx-trigger" in fragment.content
    Run.objects.filter(pk=run.pk).update(status=Status.SUCCEEDED)
    finished = client.get(f"/runs/{run.code}/live/?was=running")
    assert finished.status_code == 204 and finished["HX-Refresh"] == "true"


def test_unknown_ids_are_404(client, alice):
    client.force_login(alice)
    assert client.get("/runs/00000000-0000-4000-8000-000000000000/").status_code == 404
    assert client.get("/runs/not-a-uuid/").status_code == 404


def test_it_hides_other_orgs(client, charlie, provider, make_run, other_org, make_provider):
    run = make_run(provider, status=Status.RUNNING, workflow=WORKFLOW)
    client.force_login(charlie)
    assert client.get(f"/runs/{run.code}/").status_code == 404
    assert client.get(f"/runs/{run.code}/live/").status_code == 404
    for action in ("cancel", "retry", "sync"):
        assert client.post(f"/runs/{run.code}/{action}/").status_code == 404
    run.refresh_from_db()
    assert run.status == Status.RUNNING and not run.retries.exists()


def test_retry_refuses_another_orgs_provider(client, alice, provider, make_run, other_org, make_provider):
    theirs = make_provider(other_org, name="Theirs")
    run = make_run(provider, status=Status.FAILED, workflow=WORKFLOW)
    client.force_login(alice)
    assert client.post(f"/runs/{run.code}/retry/", {"provider": str(theirs.code)}).status_code == 404
    assert client.post(f"/runs/{run.code}/retry/", {"provider": "junk"}).status_code == 404
