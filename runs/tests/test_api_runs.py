"""The JSON API for runs, outputs and stats, through Django's test client (URL wiring and auth included)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from datetime import timezone as timezone_offset

import pytest
import time_machine
from django.core.files.base import ContentFile
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.models import ApiKey
from comfytrack.api_json import datetime_text
from providers.fake.state import QUEUED, RUNNING, SUCCEEDED
from runs.models import EventSource, Run, RunEvent, RunOutput, Status
from runs.tests.api_helpers import call, get, post

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}
RUN_KEYS = {
    "id", "provider", "external_id", "status", "provider_status", "progress", "live_status", "created", "queued",
    "started", "finished", "queue_seconds", "run_seconds", "error", "outputs", "origin", "retry_of",
    "times_source", "unseen_since", "lost_at", "cost", "cost_source",
}  # fmt: skip
OUTPUT_KEYS = {"id", "kind", "filename", "url", "archived", "width", "height", "size_bytes"}


@pytest.fixture
def ro_key(org):
    return ApiKey.issue(org, "dashboards", read_only=True)[1]


@pytest.fixture
def charlie_key(other_org, charlie):
    return ApiKey.issue(other_org, "theirs")[1]


def with_output(run: Run, name: str = "out.png", **fields) -> RunOutput:
    return RunOutput.objects.create(run=run, key=name, filename=name, kind="image", **fields)


# -- auth --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "ct_nonsense"}, {"Authorization": "Bearer ct_nonsense"}])
def test_it_answers_401_json_without_a_valid_key(client, org, headers):
    response = client.get("/api/v1/runs", headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized" and "API key" in response.json()["detail"]


def test_it_answers_401_for_a_revoked_key(client, org):
    api_key, plain = ApiKey.issue(org, "old")
    assert get(client, "/runs", plain).status_code == 200
    api_key.revoke()
    assert get(client, "/runs", plain).status_code == 401


def test_it_accepts_bearer_and_records_last_used(client, org, key):
    assert ApiKey.objects.get().last_used is None
    response = client.get("/api/v1/runs", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200 and response.json() == {"items": [], "next_cursor": None}
    assert ApiKey.objects.get().last_used is not None


def test_it_refuses_writes_with_a_read_only_key(client, provider, make_run, ro_key):
    run = make_run(provider)
    assert get(client, f"/runs/{run.code}", ro_key).status_code == 200
    for path, body in [
        ("/runs", {"provider": provider.name, "workflow": WORKFLOW}),
        ("/runs/track", {"provider": provider.name, "external_id": "x"}),
        (f"/runs/{run.code}/cancel", None),
        (f"/runs/{run.code}/retry", None),
        (f"/runs/{run.code}/sync", None),
    ]:
        response = post(client, path, ro_key, body)
        assert response.status_code == 403, path
        assert response.json()["code"] == "forbidden" and "read-only" in response.json()["detail"]
    assert Run.objects.count() == 1


def test_it_accepts_a_session_and_checks_csrf_on_writes(org, alice, provider, make_run):
    run = make_run(provider, status=Status.QUEUED)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    assert browser.get("/api/v1/runs").json()["items"][0]["id"] == str(run.code)
    refused = browser.post(f"/api/v1/runs/{run.code}/cancel")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    browser.get("/api/v1/runs")  # any page would set the cookie; set it by hand instead:
    from django.middleware.csrf import _get_new_csrf_string

    token = _get_new_csrf_string()
    browser.cookies["csrftoken"] = token
    ok = browser.post(f"/api/v1/runs/{run.code}/sync", headers={"X-CSRFToken": token})
    # Past the CSRF check: the sync itself asks the provider, which is not reachable from here (502).
    assert ok.status_code in (200, 502) and "CSRF" not in ok.json()["detail" if ok.status_code == 502 else "id"]


def test_it_treats_a_viewer_session_as_read_only(client, bob, provider, make_run):
    run = make_run(provider)
    client.force_login(bob)
    assert client.get(f"/api/v1/runs/{run.code}").status_code == 200
    refused = client.post(f"/api/v1/runs/{run.code}/sync")
    assert refused.status_code == 403
    # What is refused is the viewer's role, not an API key (there is none).
    assert "viewer" in refused.json()["detail"] and "API key is read-only" not in refused.json()["detail"]


def test_it_uses_the_session_org_the_dashboard_chose(client, alice, org, other_org, make_provider, make_run):
    from accounts.models import Membership

    Membership.objects.create(organization=other_org, user=alice, role="member")
    ours = make_run(make_provider(org))
    theirs = make_run(make_provider(other_org, name="Theirs"))
    client.force_login(alice)
    assert [r["id"] for r in client.get("/api/v1/runs").json()["items"]] == [str(ours.code)]
    session = client.session
    session["org"] = str(other_org.code)
    session.save()
    assert [r["id"] for r in client.get("/api/v1/runs").json()["items"]] == [str(theirs.code)]


def test_it_rate_limits_per_key_with_retry_after(client, org, key, ro_key, settings):
    settings.COMFYTRACK_API_RATE = "2/min"
    with time_machine.travel("2026-11-30 12:00:15Z", tick=False) as clock:
        assert [get(client, "/runs", key).status_code for _ in range(2)] == [200, 200]
        limited = get(client, "/runs", key)
        assert limited.status_code == 429 and limited.json()["code"] == "throttled"
        assert limited["Retry-After"] == "45"  # the rest of the minute
        assert get(client, "/runs", ro_key).status_code == 200  # another key has its own budget
        clock.shift(46)
        assert get(client, "/runs", key).status_code == 200  # a new window


# -- isolation ---------------------------------------------------------------------------------------


def test_it_hides_other_orgs(client, provider, make_run, charlie_key):
    run = make_run(provider, status=Status.QUEUED)
    output = with_output(run, provider_url="https://cdn.example.com/a.png")
    routes = [
        ("get", f"/runs/{run.code}"),
        ("get", f"/runs/{run.code}/outputs"),
        ("get", f"/runs/{run.code}/events"),
        ("post", f"/runs/{run.code}/cancel"),
        ("post", f"/runs/{run.code}/retry"),
        ("post", f"/runs/{run.code}/sync"),
        ("get", f"/outputs/{output.code}/file"),
    ]
    for method, path in routes:
        response = call(client, method, path, charlie_key)
        assert response.status_code == 404, path
        assert response.json()["code"] == "not_found"
    assert get(client, "/runs", charlie_key).json()["items"] == []
    for path in ("/runs", "/runs/track"):
        body = {"provider": str(provider.code), "workflow": WORKFLOW, "external_id": "x"}
        assert post(client, path, charlie_key, body).status_code == 404
        assert post(client, path, charlie_key, {**body, "provider": provider.name}).status_code == 404
    assert get(client, "/stats", charlie_key).json()["total"] == 0
    assert Run.objects.count() == 1


@pytest.mark.parametrize("path", ["/runs/{id}", "/runs/{id}/outputs", "/runs/{id}/events", "/outputs/{id}/file"])
def test_it_answers_404_for_unknown_ids(client, org, key, path):
    response = get(client, path.format(id=uuid.uuid4()), key)
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_it_answers_422_naming_a_malformed_id(client, org, key):
    response = get(client, "/runs/not-a-uuid", key)
    assert response.status_code == 422 and response.json()["field"] == "run_id"
    assert get(client, "/outputs/null/file", key).json()["field"] == "output_id"


# -- list, filters, pagination -----------------------------------------------------------------------


def test_it_returns_the_documented_run_shape(client, provider, make_run, key):
    now = timezone.now()
    original = make_run(provider, status=Status.FAILED)
    run = make_run(
        provider,
        status=Status.SUCCEEDED,
        queued=now - timedelta(seconds=30),
        started=now - timedelta(seconds=20),
        finished=now,
        queued_source="provider",
        started_source="observed",
        finished_source="provider",
        progress=1.0,
        retry_of=original,
        error={"message": "boom", "node_id": "3", "node_type": "KSampler", "exception_type": "X", "traceback": "tb"},
    )
    output = with_output(run, width=64, height=32, size_bytes=123)
    body = get(client, f"/runs/{run.code}", key).json()
    assert set(body) == RUN_KEYS
    assert body["provider"] == {"id": str(provider.code), "name": provider.name, "kind": "comfydeploy"}
    assert body["queue_seconds"] == 10.0 and body["run_seconds"] == 20.0
    # Timestamps as everywhere else in the API (ninja's DjangoJSONEncoder): milliseconds and "Z".
    assert body["finished"] == DjangoJSONEncoder().default(run.finished) and body["finished"].endswith("Z")
    assert body["error"] == {
        "message": "boom",
        "node_id": "3",
        "node_type": "KSampler",
        "exception_type": "X",
        "traceback": "tb",
    }
    sources = {"created": "observed", "queued": "provider", "started": "observed", "finished": "provider"}
    assert body["times_source"] == sources
    assert body["unseen_since"] is None and body["lost_at"] is None
    assert body["retry_of"] == str(original.code) and body["origin"] == "tracked"
    assert body["outputs"] == [
        {
            "id": str(output.code),
            "kind": "image",
            "filename": "out.png",
            "url": f"/api/v1/outputs/{output.code}/file",
            "archived": False,
            "width": 64,
            "height": 32,
            "size_bytes": 123,
        }
    ]
    listed = get(client, "/runs", key).json()["items"]
    assert [r["id"] for r in listed] == [str(run.code), str(original.code)]
    assert listed[0] == body and listed[1]["error"] is None


def test_it_filters_runs(client, org, provider, make_provider, make_run, key):
    other = make_provider(org, name="Other")
    queued = make_run(provider, "alpha-1", status=Status.QUEUED)
    failed = make_run(other, "beta-2", status=Status.FAILED, created=timezone.now() - timedelta(days=3))

    def ids(query):
        response = get(client, f"/runs?{query}", key)
        assert response.status_code == 200, response.json()
        return [r["id"] for r in response.json()["items"]]

    assert ids("status=queued") == [str(queued.code)]
    assert ids("status=queued,failed") == [str(queued.code), str(failed.code)]
    assert ids("status=problems") == [str(failed.code)]
    assert ids("provider=Other") == ids(f"provider={other.code}") == [str(failed.code)]
    assert ids("q=alpha") == [str(queued.code)]
    assert ids(f"created_before={(timezone.now() - timedelta(days=1)).date()}") == [str(failed.code)]
    assert ids(f"created_after={(timezone.now() - timedelta(days=1)).date()}") == [str(queued.code)]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=bogus", "status"),
        ("provider=nope", "provider"),
        ("provider=status-box", "provider"),  # the field is the parser's, not a word in the message
        ("created_after=yesterday", "created_after"),
        ("created_before=original", "created_before"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("cursor=%%%", "cursor"),
    ],
)
def test_it_answers_422_naming_the_field(client, org, key, query, field):
    response = get(client, f"/runs?{query}", key)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid" and body["field"] == field and field.split("_")[0] in body["detail"].lower()


def test_it_paginates_stably_while_runs_arrive(client, provider, make_run, key):
    base = timezone.now() - timedelta(hours=1)
    runs = [make_run(provider, created=base + timedelta(seconds=i // 2)) for i in range(9)]  # ties on created
    seen, cursor = [], None
    while True:
        page = get(client, "/runs?limit=4" + (f"&cursor={cursor}" if cursor else ""), key).json()
        seen += [r["id"] for r in page["items"]]
        make_run(provider)  # a new run arrives between pages: it is newer, so never shows up mid-walk
        cursor = page["next_cursor"]
        if cursor is None:
            break
    expected = [str(r.code) for r in sorted(runs, key=lambda r: (r.created, r.code), reverse=True)]
    assert seen == expected


def test_it_lists_with_a_constant_number_of_queries(client, provider, make_run, key, django_assert_num_queries):
    original = make_run(provider, status=Status.FAILED)
    get(client, "/runs", key)  # warm up: last_used is written at most once a minute
    # The key, the page of runs (provider and retry_of joined), their outputs (on PostgreSQL a JSON
    # column of the page's own query): whatever the page size.
    queries = 2 if connection.vendor == "postgresql" else 3
    with django_assert_num_queries(queries):
        assert len(get(client, "/runs?limit=50", key).json()["items"]) == 1
    for i in range(30):
        run = make_run(provider, status=Status.SUCCEEDED, retry_of=original)
        with_output(run, f"a{i}.png")
        with_output(run, f"b{i}.png")
    with django_assert_num_queries(queries):
        response = get(client, "/runs?limit=50", key)
    assert len(response.json()["items"]) == 31
    with django_assert_num_queries(queries):
        detail = get(client, f"/runs/{run.code}", key).json()
    # Both ways give the same outputs, oldest first, with their public shape.
    output = run.outputs.order_by("created", "id").first()
    assert [o["filename"] for o in detail["outputs"]] == ["a29.png", "b29.png"]
    assert detail["outputs"][0] == {
        "id": str(output.code),
        "kind": output.kind,
        "filename": "a29.png",
        "url": f"/api/v1/outputs/{output.code}/file",  # COMFYTRACK_PUBLIC_URL is empty in tests
        "archived": output.archived is not None,
        "width": output.width,
        "height": output.height,
        "size_bytes": output.size_bytes,
    }
    assert detail["outputs"] == next(i for i in response.json()["items"] if i["id"] == str(run.code))["outputs"]


# -- submit, track, actions ----------------------------------------------------------------------------


def test_it_submits_a_run_with_idempotency(client, local, fake, key):
    fake.state.default_script = ((0.0, QUEUED),)
    body = {"provider": "Local", "workflow": WORKFLOW, "inputs": {"2.filename_prefix": "x"}}
    first = post(client, "/runs", key, body, **{"Idempotency-Key": "job-42"})
    assert first.status_code == 201, first.json()
    run = first.json()
    assert run["origin"] == "api" and run["external_id"] and run["status"] == "pending"
    again = post(client, "/runs", key, body, **{"Idempotency-Key": "job-42"})
    assert again.status_code == 200 and again.json()["id"] == run["id"]
    assert Run.objects.count() == 1
    other = post(client, "/runs", key, {**body, "provider": str(local.code)})
    assert other.status_code == 201 and other.json()["id"] != run["id"]


def test_it_reports_a_refused_submission_as_a_failed_run(client, org, make_provider, key):
    dead = make_provider(org, name="Dead", kind="comfyui", base_url="http://127.0.0.1:9", secret={})
    response = post(client, "/runs", key, {"provider": dead.name, "workflow": WORKFLOW})
    assert response.status_code == 201
    assert response.json()["status"] == "failed" and response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"workflow": WORKFLOW}, "provider"),
        ({"provider": "Local"}, "workflow"),
        ({"provider": "Local", "workflow": {}}, "workflow"),
        ({"provider": "Local", "workflow": []}, "workflow"),
        ({"provider": "Local", "workflow": {"1": "a\x00b"}}, "workflow"),
        ({"provider": "Local", "workflow": WORKFLOW, "inputs": "x"}, "inputs"),
    ],
)
def test_it_validates_submissions(client, local, key, body, field):
    response = post(client, "/runs", key, body)
    assert response.status_code == 422
    assert response.json()["field"] == field and field in response.json()["detail"]
    assert not Run.objects.exists()


def test_it_answers_422_for_a_body_that_is_not_json(client, local, key):
    response = client.post("/api/v1/runs", data="{nope", content_type="application/json", headers={"X-API-Key": key})
    assert response.status_code in (400, 422) and response.json()["detail"]


def test_it_answers_404_for_an_unknown_provider(client, org, key):
    response = post(client, "/runs", key, {"provider": "Nope", "workflow": WORKFLOW})
    assert response.status_code == 404 and response.json()["field"] == "provider"


def test_it_tracks_idempotently(client, local, fake, key):
    fake.add_run("comfyui", "prompt-1", script=[(0, RUNNING)])
    first = post(client, "/runs/track", key, {"provider": "Local", "external_id": "prompt-1"})
    second = post(client, "/runs/track", key, {"provider": str(local.code), "external_id": "prompt-1"})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"] and Run.objects.count() == 1
    blank = post(client, "/runs/track", key, {"provider": "Local", "external_id": "  "})
    assert blank.status_code == 422 and blank.json()["field"] == "external_id"


def test_it_syncs_cancels_and_retries(client, local, fake, key):
    fake.state.default_script = ((0.0, RUNNING),)
    run = post(client, "/runs", key, {"provider": "Local", "workflow": WORKFLOW}).json()
    synced = post(client, f"/runs/{run['id']}/sync", key)
    assert synced.status_code == 200 and synced.json()["status"] == "running"
    cancelled = post(client, f"/runs/{run['id']}/cancel", key)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = post(client, f"/runs/{run['id']}/cancel", key)
    assert again.status_code == 409 and again.json()["code"] == "conflict"
    retried = post(client, f"/runs/{run['id']}/retry", key, {"provider": "Local"})
    assert retried.status_code == 201
    assert retried.json()["retry_of"] == run["id"] and retried.json()["origin"] == "retry"
    events = get(client, f"/runs/{run['id']}/events", key).json()
    assert [(e["from_status"], e["to_status"]) for e in events] == [("pending", "running"), ("running", "cancelled")]
    assert {"created", "source", "provider_status", "detail"} <= set(events[0])


def test_it_refuses_to_retry_a_tracked_run(client, provider, make_run, key):
    run = make_run(provider, status=Status.FAILED)
    response = post(client, f"/runs/{run.code}/retry", key)
    assert response.status_code == 409 and "no workflow" in response.json()["detail"]
    other = post(client, f"/runs/{run.code}/retry", key, {"provider": "Nope"})
    assert other.status_code == 404


# -- outputs -----------------------------------------------------------------------------------------


def test_it_lists_outputs_and_events(client, provider, make_run, key):
    run = make_run(provider, status=Status.QUEUED)
    output = with_output(run)
    RunEvent.objects.create(run=run, source=EventSource.POLL, from_status="pending", to_status="queued")
    outputs = get(client, f"/runs/{run.code}/outputs", key).json()
    assert [set(o) for o in outputs] == [OUTPUT_KEYS] and outputs[0]["id"] == str(output.code)
    events = get(client, f"/runs/{run.code}/events", key).json()
    assert [(e["to_status"], e["source"]) for e in events] == [("queued", "poll")]


def test_it_streams_an_archived_file(client, provider, make_run, key, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    output = with_output(make_run(provider), content_type="image/png")
    output.file.save("out.png", ContentFile(b"\x89PNG fake bytes"), save=False)
    output.archived, output.content_verified = timezone.now(), True  # as if the archive had checked the bytes
    output.save()
    response = get(client, f"/outputs/{output.code}/file", key)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == b"\x89PNG fake bytes"
    RunOutput.objects.filter(pk=output.pk).update(content_verified=False)
    unverified = get(client, f"/outputs/{output.code}/file", key)
    assert unverified["Content-Type"] == "application/octet-stream"
    assert unverified["Content-Disposition"].startswith("attachment")


def test_it_redirects_to_a_valid_provider_link_only(client, provider, make_run, key):
    run = make_run(provider)
    later = timezone.now() + timedelta(hours=1)
    valid = with_output(run, "a.png", provider_url="https://cdn.example.com/a.png?sig=1", provider_url_expires=later)
    expired = with_output(
        run, "b.png", provider_url="https://cdn.example.com/b.png", provider_url_expires=timezone.now()
    )
    nothing = with_output(run, "c.png")
    response = get(client, f"/outputs/{valid.code}/file", key)
    assert response.status_code == 302 and response["Location"] == "https://cdn.example.com/a.png?sig=1"
    gone = get(client, f"/outputs/{expired.code}/file", key)
    assert gone.status_code == 410 and "expired" in gone.json()["detail"]
    assert get(client, f"/outputs/{nothing.code}/file", key).status_code == 404


# -- stats ---------------------------------------------------------------------------------------------


def test_it_returns_stats(client, provider, make_run, key):
    now = timezone.now()
    make_run(provider, status=Status.SUCCEEDED, started=now - timedelta(seconds=5), finished=now)
    make_run(provider, status=Status.FAILED, error={"message": "OOM"})
    make_run(provider, status=Status.RUNNING, created=now - timedelta(days=10))
    body = get(client, "/stats?days=7", key).json()
    assert body["total"] == 2 and body["success_rate"] == 0.5
    assert body["by_status"] == {"succeeded": 1, "failed": 1}
    assert body["providers"][0]["id"] == str(provider.code) and body["providers"][0]["total"] == 2
    assert body["top_failures"] == [{"message": "OOM", "count": 1}]
    assert get(client, "/stats?days=30", key).json()["total"] == 3
    assert get(client, "/stats?days=0", key).status_code == 422


def test_it_serves_the_openapi_document_and_docs(client):
    schema = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/runs" in schema["paths"] and "/api/v1/stats" in schema["paths"]
    assert {"X-API-Key", "BearerAuth"} & set(schema["components"]["securitySchemes"])
    assert client.get("/api/v1/docs").status_code == 200


def test_it_never_answers_500_on_nul_bytes(client, local, key):
    assert get(client, "/runs?q=a%00b&provider=x%00", key).status_code in (200, 422)
    response = post(client, "/runs/track", key, {"provider": "Local", "external_id": "a\x00b"})
    assert response.status_code == 422


@pytest.mark.parametrize("terminal", [SUCCEEDED])
def test_it_keeps_the_hook_under_the_api(client, terminal):
    # Covered in depth by test_inbound_events.py; here: the route is part of the documented API.
    schema = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/hooks/comfydeploy/{provider_id}/{token}" in schema["paths"]


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC),
        datetime(2026, 11, 30, 12, 0, 0, 999_999, tzinfo=UTC),  # truncated, never rounded up
        datetime(2026, 11, 30, 12, 0, 0, 1_000, tzinfo=UTC),
        datetime(2026, 11, 30, 12, 0, 0, 5, tzinfo=UTC),
        datetime(2026, 11, 30, 12, 0, 0, 123_456, tzinfo=timezone_offset(timedelta(hours=5, minutes=30))),
        datetime(2026, 11, 30, 12, 0, 0, 123_456),  # naive
        uuid.UUID(int=7),
    ],
)
def test_times_are_written_exactly_as_ninjas_encoder_writes_them(value):
    assert datetime_text(value) == DjangoJSONEncoder().default(value)


def test_an_error_document_with_numbers_beyond_64_bits_still_lists(client, provider, make_run, key):
    run = make_run(provider, status=Status.FAILED, error={"message": "bad", "node_id": 18446744073709551617})
    page = get(client, "/runs", key)
    assert page.status_code == 200
    assert page.json()["items"][0]["error"]["node_id"] == "18446744073709551617"
    assert get(client, f"/runs/{run.code}", key).json()["error"]["node_id"] == "18446744073709551617"


@pytest.mark.filterwarnings("error:Pydantic serializer warnings")
def test_every_listed_run_equals_its_detail_field_by_field(client, provider, make_run, key):
    """The list (SQL through the cursor), the filtered list (the ORM's rows) and the detail write each run
    alike, also the rarer columns: unseen and lost runs, costs, errors, outputs and observed times. The
    list's page reaches ninja already built (runs.schemas.run_page) and is not validated again, so every
    value must already be of its schema's type: pydantic's serializer warns of any that is not, and the
    warning is an error here (a 500)."""
    now = timezone.now()
    lost = make_run(provider, status=Status.LOST, unknown_since=now - timedelta(hours=2), lost_at=now)
    unseen = make_run(provider, status=Status.RUNNING, unknown_since=now - timedelta(minutes=5), lost_at=now)
    seen_again = make_run(provider, status=Status.SUCCEEDED, unknown_since=now, lost_at=now, finished=now)
    failed = make_run(
        provider, status=Status.FAILED, error={"message": "OOM", "node_id": 9}, cost="0.5", cost_source="reported"
    )
    with_output(failed, width=3, height=4, size_bytes=5)
    with_output(failed, "second.png")
    listed = get(client, "/runs", key).json()["items"]
    filtered = get(client, f"/runs?provider={provider.code}", key).json()["items"]
    assert len(listed) == 4 and filtered == listed
    for item in listed:
        detail = get(client, f"/runs/{item['id']}", key).json()
        assert set(detail) == RUN_KEYS
        for field in RUN_KEYS:
            assert item[field] == detail[field], field
    by_id = {item["id"]: item for item in listed}
    assert by_id[str(lost.code)]["unseen_since"] == datetime_text(lost.unknown_since)
    assert by_id[str(lost.code)]["lost_at"] == datetime_text(now)
    assert by_id[str(unseen.code)]["unseen_since"] == datetime_text(unseen.unknown_since)
    assert by_id[str(seen_again.code)]["unseen_since"] is None and by_id[str(seen_again.code)]["lost_at"] is None
    assert by_id[str(seen_again.code)]["times_source"]["finished"] == "observed"
    item = by_id[str(failed.code)]
    assert item["error"]["node_id"] == "9" and item["cost"] == "0.500000" and item["cost_source"] == "reported"
    assert [o["filename"] for o in item["outputs"]] == ["out.png", "second.png"]
