"""The demo: Demo organization, Simulator provider, runs that succeed with PNGs or fail with node errors."""

from __future__ import annotations

import random

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import Organization
from providers.fake.state import FAILED, SUCCEEDED
from runs.actions import sync_run_now
from runs.demo import ensure_demo, submit_demo_run
from runs.models import Status


@pytest.mark.django_db
def test_it_sets_up_the_demo_once(fake, django_user_model):
    admin = django_user_model.objects.create_superuser("admin", password="pw")
    provider = ensure_demo(fake.base_url("comfyui"))
    again = ensure_demo(fake.base_url("comfyui"))
    assert provider == again and provider.name == "Simulator" and provider.kind == "comfyui"
    org = Organization.objects.get(slug="demo")
    assert org.role_of(admin) == "owner" and org.providers.count() == 1


@pytest.mark.django_db
def test_demo_runs_succeed_with_outputs_or_fail_with_node_errors(fake, monkeypatch):
    provider = ensure_demo(fake.base_url("comfyui"))
    rng = random.Random(1)
    monkeypatch.setattr("runs.demo.FAILURE_RATE", 0.0)
    fake.state.default_script = ((0.0, SUCCEEDED),)
    ok = sync_run_now(submit_demo_run(provider, None, rng))
    assert ok.status == Status.SUCCEEDED and ok.outputs.count() >= 1 and ok.origin == "demo"
    monkeypatch.setattr("runs.demo.FAILURE_RATE", 1.0)
    bad = submit_demo_run(provider, None, rng)
    fake.state.get("comfyui", bad.external_id).force(FAILED)
    bad = sync_run_now(bad)
    assert bad.status == Status.FAILED and bad.error["node_type"]


@pytest.mark.django_db
def test_the_demo_is_off_without_debug(settings):
    settings.COMFYTRACK_DEMO = False
    with pytest.raises(CommandError, match="demo is off"):
        call_command("demo", count=1)
