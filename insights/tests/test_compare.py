"""Comparing one workflow across providers: insights.compare, the API and the compare page."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import ApiKey
from insights.charts import run_time_per_day_svg
from insights.models import Workflow
from insights.tests.workflows import FP, GRAPH, OTHER, timed_run
from runs.fingerprint import workflow_fingerprint
from runs.models import Run, Status


def get(client, path, key):
    return client.get(f"/api/v1{path}", headers={"X-API-Key": key})


@pytest.fixture
def two_providers(org, provider, make_provider, make_run):
    cloud = make_provider(org, name="Cloud", kind="comfycloud", secret={"api_key": "k"})
    for queue, run in [(2, 10), (4, 20), (6, 30)]:
        timed_run(make_run, provider, queue=queue, run=run)
    timed_run(make_run, provider, queue=1, run=999, source="observed")  # counted, not timed
    timed_run(make_run, provider, queue=3, run=5, status=Status.FAILED, error={"message": "CUDA out of memory"})
    for queue, run in [(30, 8), (50, 9)]:
        timed_run(make_run, cloud, queue=queue, run=run, days_ago=2)
    failure = {"message": "Node X missing\nTrace"}
    timed_run(make_run, cloud, queue=1, run=1, status=Status.FAILED, days_ago=2, error=failure)
    make_run(cloud, workflow=OTHER, status=Status.SUCCEEDED)  # another workflow
    make_run(provider, workflow=GRAPH, created=timezone.now() - timedelta(days=60))  # outside 30 days
    return provider, cloud


def test_it_compares_providers_with_provider_times_only(client, key, two_providers):
    _deploy, cloud = two_providers
    body = get(client, f"/workflows/{FP}/compare?days=30", key).json()
    assert body["fingerprint"] == FP and body["name"] == "product-shots" and body["runs"] == 8
    by_name = {p["name"]: p for p in body["providers"]}
    d, c = by_name["Deploy"], by_name["Cloud"]
    assert (d["runs"], d["finished"], d["succeeded"], d["timed_runs"]) == (5, 5, 4, 4)
    assert d["success_rate"] == 0.8 and c["success_rate"] == round(2 / 3, 4)
    # Deploy's provider-timed run seconds are 5, 10, 20, 30 (the observed 999 is left out).
    assert (d["run_p50"], d["run_p95"]) == (10.0, 30.0)
    assert (d["queue_p50"], d["queue_p95"]) == (3.0, 6.0)
    assert d["top_errors"] == [{"message": "CUDA out of memory", "count": 1}]
    assert c["top_errors"] == [{"message": "Node X missing", "count": 1}]
    days = body["run_time_per_day"][str(cloud.code)]
    assert len(days) == 1 and days[0]["runs"] == 3 and days[0]["run_p50"] == 8.0


def test_it_lists_workflows_with_names_and_labels(client, key, two_providers):
    items = get(client, "/workflows", key).json()["items"]
    assert {i["fingerprint"] for i in items} == {FP, workflow_fingerprint(OTHER)}
    other = next(i for i in items if i["fingerprint"] != FP)
    assert other["name"] == f"workflow {other['fingerprint']}" and other["runs"] == 1  # no SaveImage: no name
    ours = next(i for i in items if i["fingerprint"] == FP)
    assert (ours["name"], ours["runs"], ours["providers"]) == ("product-shots", 9, 2)
    response = client.put(
        f"/api/v1/workflows/{FP}/label", data={"label": "Hero shots"}, content_type="application/json",
        headers={"X-API-Key": key},
    )  # fmt: skip
    assert response.status_code == 200 and response.json()["name"] == "Hero shots"
    assert Workflow.objects.get(fingerprint=FP).name == "product-shots"


@pytest.mark.parametrize("label", ["line\nbreak", "tab\there", "rtl\u202eexe"])
def test_a_label_is_one_line_of_text(client, key, alice, two_providers, label):
    response = client.put(
        f"/api/v1/workflows/{FP}/label", data={"label": label}, content_type="application/json",
        headers={"X-API-Key": key},
    )  # fmt: skip
    assert response.status_code == 422 and response.json()["field"] == "label"
    client.force_login(alice)
    page = client.post("/compare/label/", {"workflow": FP, "label": label}, follow=True).content.decode()
    assert "must be one line of text" in page
    assert not Workflow.objects.filter(fingerprint=FP).exclude(label="").exists()


def test_it_answers_404_for_unknown_workflows(client, key, two_providers):
    assert get(client, "/workflows/0123456789abcdef/compare", key).status_code == 404
    assert get(client, "/workflows/not-a-fingerprint/compare", key).status_code == 404


def test_it_hides_other_orgs(client, two_providers, other_org, charlie):
    their_key = ApiKey.issue(other_org, "theirs")[1]
    assert get(client, f"/workflows/{FP}/compare", their_key).status_code == 404
    assert get(client, "/workflows", their_key).json() == {"items": []}
    client.force_login(charlie)
    assert client.get(f"/compare/?workflow={FP}").status_code == 404
    assert client.post("/compare/label/", {"workflow": FP, "label": "x"}).status_code == 404
    assert not Workflow.objects.filter(label="x").exists()


def test_the_page_compares_and_links_from_the_run(client, bob, two_providers):
    client.force_login(bob)
    run = Run.objects.filter(workflow_fingerprint=FP).first()
    assert run is not None
    assert f"/compare/?workflow={FP}" in client.get(f"/runs/{run.code}/").content.decode()
    page = client.get(f"/compare/?workflow={FP}&days=30").content.decode()
    assert "product-shots" in page and "CUDA out of memory" in page and '<svg class="chart line-chart"' in page
    assert page.count('class="provider-row"') == 2 and "Save name" not in page  # bob only reads
    listing = client.get("/compare/").content.decode()
    assert f"?workflow={FP}" in listing
    assert client.post("/compare/label/", {"workflow": FP, "label": "x"}).status_code == 403


def test_writers_name_a_workflow_on_the_page(client, alice, two_providers):
    client.force_login(alice)
    response = client.post("/compare/label/", {"workflow": FP, "label": "  Hero shots  "})
    assert response.status_code == 302 and Workflow.objects.get(fingerprint=FP).label == "Hero shots"
    assert "Hero shots" in client.get(f"/compare/?workflow={FP}").content.decode()


def test_it_compares_costs(client, key, two_providers):
    deploy, _cloud = two_providers
    Run.objects.filter(provider=deploy, workflow_fingerprint=FP).update(cost=Decimal("0.02"), cost_source="reported")
    body = get(client, f"/workflows/{FP}/compare?days=30", key).json()
    d = next(p for p in body["providers"] if p["name"] == "Deploy")
    c = next(p for p in body["providers"] if p["name"] == "Cloud")
    assert (d["costed_runs"], d["cost_total"], d["cost_per_run"]) == (5, "0.100000", "0.020000")
    assert (c["costed_runs"], c["cost_total"], c["cost_per_run"]) == (0, None, None)


@pytest.mark.parametrize(
    ("peak", "ticks"),
    [(1.0, ["0.0 s", "0.5 s", "1.0 s"]), (30.0, ["0 s", "15 s", "30 s"]), (600.0, ["0.0 min", "5.0 min", "10.0 min"])],
)
def test_the_chart_axis_labels_its_ticks_apart(peak, ticks):
    day = timezone.now().date()
    svg = run_time_per_day_svg([("Deploy", [(day, peak, 3)])], first=day - timedelta(days=6), last=day)
    labels = re.findall(r'<text class="axis" x="40" y="[^"]+">([^<]+)</text>', svg)
    assert labels == list(reversed(ticks)) or labels == ticks
    assert f"Deploy · {day.isoformat()}: median" in svg
