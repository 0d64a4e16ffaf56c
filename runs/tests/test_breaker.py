"""The per-credential breaker, in real time against the fake server's fault modes over loopback HTTP:
while a provider is down one probe at a time asks for all its runs; once it is back they are synced
within seconds; Retry-After is honoured. Health and the command line say what happened."""

from __future__ import annotations

import time
from datetime import timedelta

from django.core.management import call_command
from django.utils import timezone

from providers.fake import state as S
from providers.models import Credential
from runs.models import Run, Status
from runs.sync import sync_due_runs
from runs.tests.sync_helpers import provider_for, sweep, tracked


def sweep_for(seconds: float, until=None, every: float = 0.25) -> float:
    """Sweep as the sync loop does (what is due now, again and again) for `seconds`, or until `until()`;
    returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        sync_due_runs(archive=False)
        if until is not None and until():
            break
        time.sleep(every)
    return time.monotonic() - started


def requests_to(fake, kind: str) -> int:
    return sum(1 for k, _, _ in fake.state.requests if k == kind)


def test_one_probe_at_a_time_while_down_and_every_run_synced_within_10_s_of_coming_back(org, make_provider, fake):
    provider = provider_for(org, make_provider, fake, "comfyui")
    pairs = [tracked(fake, provider, script=((0.0, S.RUNNING),)) for _ in range(20)]
    sweep()
    assert set(Run.objects.values_list("status", flat=True)) == {Status.RUNNING}

    fake.set_faults(mode="5xx", only_kind="comfyui")
    before = requests_to(fake, "comfyui")
    sweep_for(9.5)
    # Probes 1, 2, 4 s apart (then 8): a handful of single requests, not 20 runs × 38 sweeps.
    during = requests_to(fake, "comfyui") - before
    print(f"outage: {during} request(s) to the provider in 9.5 s for 20 runs")
    assert 3 <= during <= 6, during
    credential = Credential.objects.get(provider=provider)
    assert credential.latest_outcome == "failing" and "502" in credential.last_error
    assert credential.consecutive_failures >= 3

    fake.set_faults()
    for fake_run, _ in pairs:
        fake_run.force(S.SUCCEEDED)
    back = time.monotonic()
    took = sweep_for(15, until=lambda: not Run.objects.in_flight().exists())
    assert not Run.objects.in_flight().exists(), "not synced 15 s after the provider came back"
    print(f"back: every run synced {took:.1f} s after the provider came back")
    assert took <= 10.0, took
    assert time.monotonic() - back <= 10.5
    credential.refresh_from_db()
    assert credential.latest_outcome == "ok" and credential.consecutive_failures == 0


def test_the_probe_honours_retry_after(org, make_provider, fake):
    provider = provider_for(org, make_provider, fake, "comfydeploy")
    for _ in range(5):
        tracked(fake, provider, script=((0.0, S.RUNNING),))
    sweep()
    fake.set_faults(mode="429", only_kind="comfydeploy", retry_after=3)
    Run.objects.update(next_sync_after=timezone.now())
    sync_due_runs(archive=False)  # told to wait 3 s
    before = requests_to(fake, "comfydeploy")
    sweep_for(7.0)
    # Then one probe at a time (one request each), never sooner than Retry-After: at about 3 and 6 s.
    probes = requests_to(fake, "comfydeploy") - before
    assert 1 <= probes <= 2, probes
    credential = Credential.objects.get(provider=provider)
    assert credential.blocked_until is not None and credential.last_failure is not None
    assert credential.blocked_until - credential.last_failure >= timedelta(seconds=3)
    assert credential.latest_outcome == "failing" and "rate limiting" in credential.last_error


def test_the_command_line_names_each_failing_provider_and_its_reason(org, make_provider, fake, capsys):
    down = provider_for(org, make_provider, fake, "comfydeploy")
    tracked(fake, down)
    ok = provider_for(org, make_provider, fake, "comfyui")
    tracked(fake, ok)
    fake.set_faults(mode="html", only_kind="comfydeploy")
    call_command("sync_runs", "--once")
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "failing:" in line]
    assert len(lines) == 1 and down.name in lines[0] and "502" in lines[0] and "HTML" in lines[0]
    assert "Traceback" not in out and ok.name not in lines[0]


def test_sync_now_says_what_happened(org, make_provider, fake, client, alice):
    provider = provider_for(org, make_provider, fake, "comfyui")
    fake_run, run = tracked(fake, provider, script=((0.0, S.RUNNING),))
    client.force_login(alice)
    fake.set_faults(mode="5xx", only_kind="comfyui")
    page = client.post(f"/runs/{run.code}/sync/", follow=True).content.decode()
    assert "did not answer" in page and "502" in page and "Synced with" not in page
    fake.set_faults()
    page = client.post(f"/runs/{run.code}/sync/", follow=True).content.decode()
    assert f"Synced with {provider.name}: the run is running." in page
    # The providers page shows the latest outcome: the success after the failure.
    providers = client.get("/providers/").content.decode()
    assert "badge s-succeeded" in providers and "502" in providers  # the last failure, with its message
    assert fake_run.external_id  # the run exists on the provider


def test_runs_of_a_comfyui_that_restarted_during_an_outage_are_lost_seconds_after_it_answers(org, make_provider, fake):
    provider = provider_for(org, make_provider, fake, "comfyui")
    for _ in range(5):
        tracked(fake, provider, script=((0.0, S.RUNNING),))
    sweep()
    fake.set_faults(mode="5xx", only_kind="comfyui")  # down...
    sweep_for(3.5)
    assert Run.objects.filter(status=Status.RUNNING).count() == 5
    fake.state.restart("comfyui")  # ...and back, with an empty queue and history
    fake.set_faults()
    took = sweep_for(20, until=lambda: not Run.objects.in_flight().exists())
    assert set(Run.objects.values_list("status", flat=True)) == {Status.LOST}
    # The probe (at most 4 s into the breaker here), then the first "unknown", then the re-check 4 s later.
    assert took <= 10.0, took
    assert not Run.objects.filter(finished__isnull=False).exists()
