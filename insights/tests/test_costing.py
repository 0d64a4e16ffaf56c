"""What runs cost: from the GPU time a provider reports (real client over loopback to the fake provider
server), estimated from the run time or a price per run otherwise; shown by the API, pages and stats."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import ApiKey
from insights.costing import cost_of, price_runs
from insights.models import Price
from providers.fake import state
from runs.actions import sync_run_now
from runs.models import Origin, Run, Status
from runs.submission import submit_run

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


@pytest.fixture
def held(fake, monkeypatch):
    """Submitted runs stay queued until a test moves them with run.force(phase)."""
    monkeypatch.setattr(fake.state, "default_script", ((0.0, state.QUEUED),))
    return fake


def finish(fake, kind: str, run: Run) -> Run:
    fake_run = fake.state.get(kind, run.external_id)
    fake_run.force(state.RUNNING)
    sync_run_now(run)
    fake_run.force(state.SUCCEEDED)
    sync_run_now(Run.objects.get(pk=run.pk))
    return Run.objects.get(pk=run.pk)


def price(provider, gpu="", per_gpu_second=None, per_run=None) -> Price:
    return Price.objects.create(provider=provider, gpu=gpu, per_gpu_second=per_gpu_second, per_run=per_run)


def test_comfydeploy_runs_are_priced_from_their_reported_gpu_time(org, make_provider, held):
    deploy = make_provider(
        org, "Deploy", "comfydeploy", held.base_url("comfydeploy"), held.secret("comfydeploy"), {"deployment_id": "d"}
    )
    price(deploy, "A10G", per_gpu_second=Decimal("0.000306"))
    price(deploy, "", per_gpu_second=Decimal("0.01"))  # other GPUs: not this run's
    run = finish(held, "comfydeploy", submit_run(deploy, {}, {"prompt": "a cat"}, origin=Origin.API))
    assert run.status == Status.SUCCEEDED and run.gpu == "A10G" and run.gpu_seconds is not None
    assert run.cost == (Decimal(str(run.gpu_seconds)) * Decimal("0.000306")).quantize(Decimal("0.000001"))
    assert run.cost_source == "reported"


def test_comfy_cloud_v2_jobs_are_priced_from_execution_ms(org, make_provider, held):
    cloud = make_provider(org, "Cloud", "comfycloud", held.base_url("comfycloud"), held.secret("comfycloud"))
    cloud.config = {"api": "v2"}
    cloud.save()
    price(cloud, per_gpu_second=Decimal("0.002"))
    run = finish(held, "comfycloud", submit_run(cloud, WORKFLOW, origin=Origin.API))
    fake_run = held.state.get("comfycloud", run.external_id)
    expected = fake_run.finished_at() - fake_run.entered(state.RUNNING)
    assert run.gpu_seconds is not None
    assert run.gpu == "" and abs(run.gpu_seconds - expected) < 0.002
    assert run.cost is not None
    assert run.cost_source == "reported" and run.cost > 0


def test_speedpix_tasks_are_priced_from_their_reported_task_duration(org, make_provider, held):
    speedpix = make_provider(
        org, "SpeedPix", "speedpix", held.base_url("speedpix"), held.secret("speedpix"), {"workflow_id": "wf-1"}
    )
    price(speedpix, per_gpu_second=Decimal("0.003"))
    run = finish(held, "speedpix", submit_run(speedpix, {}, {"prompt": "a cat"}, origin=Origin.API))
    fake_run = held.state.get("speedpix", run.external_id)
    expected = int((fake_run.finished_at() - fake_run.entered(state.RUNNING)) * 1000) / 1000  # taskDuration, ms
    assert run.status == Status.SUCCEEDED and run.gpu == "" and run.gpu_seconds == expected
    assert run.cost == (Decimal(str(expected)) * Decimal("0.003")).quantize(Decimal("0.000001"))
    assert run.cost_source == "reported"


# Kinds that report no usage: self-hosted ComfyUI, Comfy Cloud v1 (execution times only).
@pytest.mark.parametrize("kind", ["comfyui", "comfycloud"])
def test_runs_without_reported_usage_get_an_estimate(org, make_provider, held, kind):
    local = make_provider(org, "Local", kind, held.base_url(kind), held.secret(kind))
    price(local, per_gpu_second=Decimal("0.001"))
    run = finish(held, kind, submit_run(local, WORKFLOW, origin=Origin.API))
    assert run.status == Status.SUCCEEDED
    assert run.gpu_seconds is None and run.cost_source == "estimated"
    assert run.cost == (Decimal(str(run.run_seconds)) * Decimal("0.001")).quantize(Decimal("0.000001"))


def test_aws_esd_runs_are_estimated_per_run_only(org, make_provider, held):
    """ESD reports no usage, and an async endpoint no start time: no run time to price by the second."""
    esd = make_provider(org, "ESD", "aws_esd", held.base_url("aws_esd"), held.secret("aws_esd"), {"endpoint_name": "e"})
    price(esd, per_gpu_second=Decimal("0.001"))
    run = finish(held, "aws_esd", submit_run(esd, WORKFLOW, origin=Origin.API))
    assert run.status == Status.SUCCEEDED and run.started is None and run.gpu_seconds is None
    assert (run.cost, run.cost_source) == (None, "")
    Price.objects.filter(provider=esd).update(per_run=Decimal("0.05"))
    price_runs(Run.objects.filter(pk=run.pk))
    run.refresh_from_db()
    assert (run.cost, run.cost_source) == (Decimal("0.050000"), "estimated")


def test_a_per_run_price_bills_only_runs_that_ran(org, make_provider, make_run, held):
    """Refused at submission, cancelled in the queue, or lost without ever being seen running: no estimate.
    A run that started (whatever its end) or succeeded is billed per run."""
    local = make_provider(org, "Local", "comfyui", held.base_url("comfyui"), held.secret("comfyui"))
    price(local, per_run=Decimal("0.02"))
    deploy = make_provider(org, "Deploy", "comfydeploy", held.base_url("comfydeploy"), held.secret("comfydeploy"))
    price(deploy, per_run=Decimal("0.02"))
    refused = submit_run(deploy, {}, {"prompt": "a cat"}, origin=Origin.API)  # no deployment_id: never sent
    at = timezone.now()
    never_ran = [
        make_run(local, status=Status.LOST),
        make_run(local, status=Status.CANCELLED),
        make_run(local, status=Status.TIMED_OUT),
    ]
    ran = [
        make_run(local, status=Status.FAILED, started=at, finished=at),
        make_run(local, status=Status.LOST, started=at),
        make_run(local, status=Status.SUCCEEDED),  # a provider that reports no times (ESD) still ran it
    ]
    price_runs(Run.objects.all())
    assert refused.status == Status.FAILED
    for run in [refused, *never_ran]:
        run.refresh_from_db()
        assert (run.status, run.cost, run.cost_source) == (run.status, None, "")
    for run in ran:
        run.refresh_from_db()
        assert (run.status, run.cost, run.cost_source) == (run.status, Decimal("0.020000"), "estimated")


def test_the_rules_in_order():
    at = timezone.now()
    per_second = {
        "A10G": Price(per_gpu_second=Decimal("0.5")),
        "": Price(per_gpu_second=Decimal("1"), per_run=Decimal("3")),
    }
    assert cost_of(per_second, "A10G", 10.0, None, None) == (Decimal("5.000000"), "reported")
    assert cost_of(per_second, "H100", 10.0, None, None) == (Decimal("10.000000"), "reported")
    assert cost_of(per_second, "", None, at, at + timedelta(seconds=4)) == (Decimal("4.000000"), "estimated")
    assert cost_of(per_second, "", None, at, None) == (Decimal("3.000000"), "estimated")  # no run time: per run
    assert cost_of({"": Price(per_run=Decimal("0.25"))}, "A10G", 99.0, None, None) == (Decimal("0.250000"), "estimated")
    assert cost_of({}, "A10G", 10.0, at, at) == (None, "")
    per_run = {"": Price(per_run=Decimal("0.25"))}
    assert cost_of(per_run, "", None, None, None, Status.LOST) == (None, "")  # never seen running
    assert cost_of(per_run, "", None, at, None, Status.LOST) == (Decimal("0.250000"), "estimated")
    assert cost_of(per_second, "A10G", 10.0, None, None, Status.FAILED) == (Decimal("5.000000"), "reported")


def test_price_changes_recost_finished_runs_and_the_admin_is_scoped(client, alice, charlie, provider, make_run):
    now = timezone.now()
    done = make_run(provider, status=Status.SUCCEEDED, started=now - timedelta(seconds=20), finished=now)
    running = make_run(provider, status=Status.RUNNING, started=now)
    client.force_login(alice)
    response = client.post(
        "/admin/insights/price/add/", {"provider": provider.pk, "gpu": "", "per_gpu_second": "0.5", "per_run": ""}
    )
    assert response.status_code == 302, response.content
    done.refresh_from_db()
    running.refresh_from_db()
    assert (done.cost, done.cost_source) == (Decimal("10.000000"), "estimated") and running.cost is None
    Price.objects.update(per_gpu_second=Decimal("1"))
    assert price_runs(Run.objects.all()) == 1 and Run.objects.get(pk=done.pk).cost == Decimal("20.000000")
    client.force_login(charlie)
    assert b"0 prices" in client.get("/admin/insights/price/").content
    assert client.get(f"/admin/insights/price/{Price.objects.get().pk}/change/").status_code in (302, 403, 404)


def test_the_api_pages_and_stats_show_costs(client, org, alice, bob, provider, make_provider, make_run):
    other = make_provider(org, name="Other")
    now = timezone.now()
    make_run(provider, status=Status.SUCCEEDED, cost=Decimal("0.5"), cost_source="reported", created=now)
    make_run(provider, status=Status.FAILED, cost=Decimal("0.25"), cost_source="estimated", created=now)
    run = make_run(other, status=Status.SUCCEEDED, cost=Decimal("2"), cost_source="estimated", created=now)
    make_run(other, status=Status.SUCCEEDED, created=now)  # no price: no cost
    key = ApiKey.issue(org, "ci")[1]
    body = client.get(f"/api/v1/runs/{run.code}", headers={"X-API-Key": key}).json()
    assert (body["cost"], body["cost_source"]) == ("2.000000", "estimated")
    stats = client.get("/api/v1/stats", headers={"X-API-Key": key}).json()
    assert stats["cost_total"] == "2.750000"
    assert {p["name"]: (p["cost_total"], p["costed_runs"]) for p in stats["providers"]} == {
        "Deploy": ("0.750000", 2),
        "Other": ("2.000000", 1),
    }
    assert stats["cost_per_day"] == [
        {"day": now.date().isoformat(), "by_provider": {"Deploy": "0.750000", "Other": "2.000000"}}
    ]
    client.force_login(bob)
    assert "$2.00" in client.get(f"/runs/{run.code}/").content.decode()
    page = client.get("/stats/").content.decode()
    assert "$2.75" in page and "Cost per day and provider" in page
    total = client.get(f"/runs/cost/?provider={provider.code}").content.decode()
    assert "$0.75" in total and "2 costed runs (1 estimated)" in total
    assert "/runs/cost/" in client.get("/runs/").content.decode()


def test_it_hides_other_orgs_costs(client, provider, make_run, other_org, charlie):
    make_run(provider, status=Status.SUCCEEDED, cost=Decimal("9"), cost_source="estimated")
    client.force_login(charlie)
    assert "$9" not in client.get("/runs/cost/").content.decode()
    assert "$9" not in client.get("/stats/").content.decode()
