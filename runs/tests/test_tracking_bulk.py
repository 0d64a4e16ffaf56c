"""Registering many runs at once: runs.tracking.track_runs, the API's external_ids, track_runs, the page."""

from __future__ import annotations

import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import ApiKey
from runs.fingerprint import workflow_fingerprint
from runs.models import Run
from runs.tracking import MAX_TRACK_IDS, read_external_ids, track_run, track_runs

ROOT = Path(__file__).resolve().parents[2]


def post_track(client, key, body):
    return client.post("/api/v1/runs/track", data=body, content_type="application/json", headers={"X-API-Key": key})


# -- runs.tracking ---------------------------------------------------------------------------------


def test_it_tracks_new_and_existing_ids_in_order_with_repeats(provider):
    old, _ = track_run(provider, "b")
    results = track_runs(provider, ["a", "b", "a", " c "])
    assert [(r.external_id, r.created, r.error) for r in results] == [
        ("a", True, None),
        ("b", False, None),
        ("a", False, None),
        ("c", True, None),
    ]
    assert results[0].run_code == results[2].run_code and results[1].run_code == old.code
    assert Run.objects.filter(provider=provider).count() == 3
    run = Run.objects.get(external_id="c")
    assert run.credential == provider.credentials.get() and run.origin == "tracked" and run.search_text == "c"
    assert run.next_sync_after is not None  # due at once


def test_it_refuses_bad_ids_and_keeps_the_rest(provider):
    hostile = ["a\x00b", "with space", "esc\x1b[31m", "del\x7f", "rtl\u202eexe.png", "zero\u200bwidth", "\ufeffbom"]
    results = track_runs(provider, ["ok-1", "", "x" * 201, *hostile, "ok-2"])
    assert [r.error is None for r in results] == [True, False, False] + [False] * len(hostile) + [True]
    blank, too_long = results[1].error, results[2].error
    assert blank is not None and too_long is not None
    assert "blank" in blank and "200" in too_long and results[1].run_code is None
    assert set(Run.objects.values_list("external_id", flat=True)) == {"ok-1", "ok-2"}


def test_it_uses_one_insert_for_a_thousand_ids(provider):
    ids = [f"id-{n}" for n in range(MAX_TRACK_IDS)]
    with CaptureQueriesContext(connection) as queries:
        results = track_runs(provider, ids)
    inserts = [q for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("INSERT")]
    assert len(inserts) == 1 and len(queries) <= 4
    assert all(r.created for r in results) and Run.objects.count() == MAX_TRACK_IDS
    assert not any(r.created for r in track_runs(provider, ids))
    with pytest.raises(ValueError, match="at most 1000"):
        track_runs(provider, [*ids, "one-more"])


def test_it_keeps_another_providers_run_with_the_same_id_apart(org, provider, make_provider):
    other = make_provider(org, name="Other")
    track_runs(other, ["same"])
    result = track_runs(provider, ["same"])[0]
    assert result.created and Run.objects.filter(external_id="same").count() == 2


def test_it_reads_pasted_lists_and_csv():
    assert read_external_ids("a\n b, c;d\n\n# a comment\ne\tf\n") == ["a", "b", "c", "d", "e", "f"]
    csv_text = '\ufeffname,External_ID,status\nfirst,p-1,done\nsecond,"p-2",failed\nthird,,x\n'
    assert read_external_ids(csv_text) == ["p-1", "p-2"]
    assert read_external_ids("external_id\nq-1\nq-2\n") == ["q-1", "q-2"]
    assert read_external_ids("") == []


# -- API -------------------------------------------------------------------------------------------


def test_it_tracks_a_list_through_the_api(client, provider, key):
    track_run(provider, "known")
    response = post_track(client, key, {"provider": provider.name, "external_ids": ["known", "new", " "]})
    assert response.status_code == 200
    items = response.json()["items"]
    assert [(i["external_id"], i["created"], i["error"] is None) for i in items] == [
        ("known", False, True),
        ("new", True, True),
        ("", False, False),
    ]
    assert items[1]["id"] == str(Run.objects.get(external_id="new").code) and items[2]["id"] is None


GRAPH = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "given"}},
}


def test_it_takes_the_workflow_a_caller_names_for_the_runs_it_registers(client, provider, key):
    track_run(provider, "known")
    one = post_track(client, key, {"provider": provider.name, "external_id": "one", "workflow": GRAPH})
    assert one.status_code == 201
    many = post_track(client, key, {"provider": provider.name, "external_ids": ["known", "a", "b"], "workflow": GRAPH})
    assert many.status_code == 200
    fingerprints = dict(Run.objects.values_list("external_id", "workflow_fingerprint"))
    fp = workflow_fingerprint(GRAPH)
    assert fingerprints == {"known": "", "one": fp, "a": fp, "b": fp}  # a run already tracked keeps what it has
    assert (
        Run.objects.get(external_id="a").workflow == GRAPH
        and "emptyimage" in Run.objects.get(external_id="a").search_text
    )


@pytest.mark.parametrize(
    "body, field",
    [
        ({"provider": "Deploy", "external_id": "a", "workflow": {"nodes": [], "links": []}}, "workflow"),
        ({"provider": "Deploy", "external_id": "a", "workflow": {}}, "workflow"),
        ({"provider": "Deploy", "external_ids": ["a"], "workflow": {"1": {"inputs": {}}}}, "workflow"),
        ({"provider": "Deploy", "external_id": "a", "workflow": "EmptyImage"}, "workflow"),
        ({"provider": "Deploy"}, None),
        ({"provider": "Deploy", "external_id": "a", "external_ids": ["b"]}, None),
        ({"provider": "Deploy", "external_ids": []}, "external_ids"),
        ({"provider": "Deploy", "external_ids": "abc"}, "external_ids"),
        ({"provider": "Deploy", "external_ids": [str(n) for n in range(1001)]}, "external_ids"),
        # One id is held to the rules each id of a list is (there, a per-id error; here, the body's 422).
        ({"provider": "Deploy", "external_id": "with space"}, "external_id"),
        ({"provider": "Deploy", "external_id": "esc\x1b[31m"}, "external_id"),
        ({"provider": "Deploy", "external_id": "rtl\u202eexe.png"}, "external_id"),
    ],
)
def test_it_answers_422_for_a_bad_bulk_body(client, provider, key, body, field):
    response = post_track(client, key, body)
    assert response.status_code == 422, response.content
    assert response.json()["detail"]
    if field:
        assert response.json()["field"] == field
    assert Run.objects.count() == 0


def test_it_hides_other_orgs(client, provider, other_org, charlie, make_provider):
    theirs = make_provider(other_org, name="Theirs")
    key = ApiKey.issue(other_org, "theirs")[1]
    response = post_track(client, key, {"provider": provider.name, "external_ids": ["a"]})
    assert response.status_code == 404 and response.json()["field"] == "provider"
    assert post_track(client, key, {"provider": str(theirs.code), "external_ids": ["a"]}).status_code == 200
    assert not Run.objects.filter(provider=provider).exists()


def test_it_refuses_a_bulk_track_with_a_read_only_key(client, provider, org):
    key = ApiKey.issue(org, "ro", read_only=True)[1]
    assert post_track(client, key, {"provider": provider.name, "external_ids": ["a"]}).status_code == 403


# -- the command -----------------------------------------------------------------------------------


def test_the_command_reads_a_file_in_chunks(provider, tmp_path):
    track_run(provider, "id-0")
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(f"id-{n}" for n in range(2500)) + "\n" + "x" * 300 + "\n")
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="1 ids refused"):
        call_command("track_runs", "acme", "Deploy", "--file", str(ids), stdout=out, stderr=err)
    assert out.getvalue().splitlines()[-1] == "2,501 ids: 2,499 newly tracked, 1 already tracked, 1 refused"
    assert "longer than 200" in err.getvalue() and Run.objects.count() == 2500


def test_the_command_reads_stdin_and_reports_bad_input_in_one_line(provider, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DEBUG": "true", "COMFYTRACK_DATA_DIR": str(tmp_path)}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path}/db.sqlite3"

    def manage(*args, stdin=""):
        command = [sys.executable, "manage.py", *args]
        return subprocess.run(command, cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=60)

    assert manage("migrate", "-v", "0").returncode == 0
    assert manage("create_user", "ann", stdin="").returncode == 0
    assert manage("create_org", "acme", "--owner", "ann").returncode == 0
    local = ("add_provider", "acme", "Local", "--kind", "comfyui", "--base-url", "http://127.0.0.1:9")
    assert manage(*local).returncode == 0
    result = manage("track_runs", "acme", "Local", "--file", "-", stdin="p1\np2\np1\n")
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == (
        "3 ids: 2 newly tracked, 1 already tracked, 0 refused"
    )
    for args, message in [
        (("track_runs", "acme", "Nope", "--file", "-"), "CommandError: acme has no provider named 'Nope'."),
        (("track_runs", "acme", "Local", "--file", str(tmp_path / "missing.txt")), "No such file or directory"),
        (("track_runs", "acme", "Local", "--file", "-"), "CommandError: no ids in standard input."),
    ]:
        result = manage(*args)
        assert result.returncode == 1 and message in result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


# -- the page --------------------------------------------------------------------------------------


def test_the_page_tracks_a_pasted_list(client, alice, provider):
    track_run(provider, "old")
    client.force_login(alice)
    assert client.get("/runs/track/").status_code == 200
    response = client.post("/runs/track/", {"provider": str(provider.code), "ids": "old\nnew-1, new-2\n" + "y" * 201})
    assert response.status_code == 200
    body = response.content.decode()
    assert "<strong>2</strong> newly tracked" in body and "<strong>1</strong> already tracked" in body
    assert "<strong>1</strong> refused" in body and "longer than 200" in body
    assert Run.objects.filter(external_id__in=["new-1", "new-2"]).count() == 2


def test_the_page_tracks_a_csv_upload(client, alice, provider):
    client.force_login(alice)
    upload = SimpleUploadedFile("runs.csv", b"external_id,note\ncsv-1,a\ncsv-2,b\n", content_type="text/csv")
    response = client.post("/runs/track/", {"provider": str(provider.code), "ids_file": upload})
    assert response.status_code == 200 and b"<strong>2</strong> newly tracked" in response.content
    bad = SimpleUploadedFile("runs.csv", b"\xff\xfe\x00bad", content_type="text/csv")
    response = client.post("/runs/track/", {"provider": str(provider.code), "ids_file": bad})
    assert response.status_code == 400 and b"not UTF-8" in response.content


def test_the_page_refuses_viewers_and_other_orgs_providers(client, bob, charlie, provider):
    client.force_login(bob)
    assert client.post("/runs/track/", {"provider": str(provider.code), "ids": "a"}).status_code == 403
    client.force_login(charlie)
    response = client.post("/runs/track/", {"provider": str(provider.code), "ids": "a"})
    assert response.status_code == 400 and b"Choose one of this organization" in response.content
    assert Run.objects.count() == 0
