"""Streamed exports: the runs list as CSV / JSON Lines (API and page) and a gallery selection as a zip."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from accounts.models import ApiKey
from runs.export import COLUMNS, neutralise
from runs.models import RunOutput, Status


def body(response) -> str:
    assert response.streaming
    return b"".join(response.streaming_content).decode()


def export(client, key, query: str):
    return client.get(f"/api/v1/runs/export?{query}", headers={"X-API-Key": key})


@pytest.fixture
def runs(provider, make_run):
    now = timezone.now()
    failed = make_run(
        provider,
        '=HYPERLINK("http://evil")',
        status=Status.FAILED,
        created=now - timedelta(minutes=2),
        started=now - timedelta(minutes=2),
        finished=now - timedelta(minutes=1),
        error={"message": "@SUM(1) out of memory", "node_type": "KSampler"},
    )
    ok = make_run(provider, "plain-1", status=Status.SUCCEEDED, created=now - timedelta(minutes=1))
    return failed, ok


def test_it_neutralises_formula_cells():
    assert [neutralise(v) for v in ["=1+1", "+1", "-2", "@x", "\tx", "plain", "a=b", "\uff1d1+1", "\uff20x"]] == [
        "'=1+1", "'+1", "'-2", "'@x", "'\tx", "plain", "a=b", "'\uff1d1+1", "'\uff20x",
    ]  # fmt: skip


def test_it_exports_csv_with_the_lists_filters(client, key, runs):
    failed, ok = runs
    response = export(client, key, "format=csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="comfytrack-runs-')
    rows = list(csv.DictReader(io.StringIO(body(response))))
    assert list(rows[0]) == list(COLUMNS)
    assert [r["id"] for r in rows] == [str(ok.code), str(failed.code)]  # newest first
    assert rows[1]["external_id"] == '\'=HYPERLINK("http://evil")' and rows[1]["error"] == "'@SUM(1) out of memory"
    assert rows[1]["run_seconds"] == "60.0" and rows[1]["error_node_type"] == "KSampler"
    assert rows[0]["provider"] == "Deploy" and rows[0]["started"] == "" and rows[0]["error"] == ""
    only_failed = list(csv.DictReader(io.StringIO(body(export(client, key, "status=problems")))))
    assert [r["id"] for r in only_failed] == [str(failed.code)]


def test_it_exports_json_lines(client, key, runs):
    failed, ok = runs
    response = export(client, key, "format=jsonl&q=plain")
    assert response["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in body(response).splitlines()]
    assert len(lines) == 1 and lines[0]["id"] == str(ok.code) and lines[0]["error"] is None
    everything = [json.loads(line) for line in body(export(client, key, "format=jsonl")).splitlines()]
    assert everything[1]["external_id"] == failed.external_id  # JSON is not a spreadsheet: kept as is
    assert set(everything[1]) == set(COLUMNS)


def test_it_streams_more_rows_than_one_chunk(client, key, provider, make_run, monkeypatch):
    monkeypatch.setattr("runs.export.CHUNK_ROWS", 3)
    for n in range(10):
        make_run(provider, f"r{n}")
    response = export(client, key, "format=csv")
    parts = list(response.streaming_content)
    assert len(parts) >= 4 and len(b"".join(parts).decode().splitlines()) == 11


@pytest.mark.parametrize(
    "query, field", [("format=xml", "format"), ("status=nope", "status"), ("provider=X", "provider")]
)
def test_it_answers_422_for_bad_export_parameters(client, key, runs, query, field):
    response = export(client, key, query)
    assert response.status_code == 422 and response.json()["field"] == field


def test_it_hides_other_orgs(client, runs, other_org, charlie, make_provider, make_run):
    make_run(make_provider(other_org, name="Theirs"), "theirs-1")
    their_key = ApiKey.issue(other_org, "theirs")[1]
    rows = list(csv.DictReader(io.StringIO(body(export(client, their_key, "format=csv")))))
    assert [r["external_id"] for r in rows] == ["theirs-1"]
    client.force_login(charlie)
    page_rows = list(csv.DictReader(io.StringIO(body(client.get("/runs/export/?format=csv")))))
    assert [r["external_id"] for r in page_rows] == ["theirs-1"]


def test_the_page_exports_the_lists_current_filters(client, bob, runs):
    failed, _ok = runs
    client.force_login(bob)  # reading is enough
    listing = client.get("/runs/?status=failed&cursor=abc&limit=5").content.decode()
    assert '"/runs/export/?status=failed&amp;format=csv"' in listing
    assert '"/runs/export/?status=failed&amp;format=jsonl"' in listing
    lines = body(client.get("/runs/export/?status=failed&format=jsonl")).splitlines()
    assert [json.loads(line)["id"] for line in lines] == [str(failed.code)]
    bad = client.get("/runs/export/?format=pdf")
    assert bad.status_code == 400 and b"Unknown format" in bad.content


# -- gallery zip -------------------------------------------------------------------------------------


def archived_output(run, name: str, data: bytes) -> RunOutput:
    key = f"{name}-{data.hex()}"
    output = RunOutput(run=run, key=key, kind="image", filename=name, sha256="ab" * 32, size_bytes=len(data))
    output.file.save(name, ContentFile(data), save=False)
    output.archived = timezone.now()
    output.save()
    return output


def test_the_gallery_selection_downloads_as_a_zip_with_a_manifest(client, bob, provider, make_run):
    run = make_run(provider, "../../etc/passwd")
    first = archived_output(run, "ComfyUI_00001_.png", b"\x89PNG one")
    twin = archived_output(run, "ComfyUI_00001_.png", b"\x89PNG two")
    pending = RunOutput.objects.create(run=run, key="later", kind="image", filename="later.png")
    client.force_login(bob)
    assert b'id="zip-form"' in client.get("/gallery/").content
    response = client.post("/gallery/download/", {"output": [first.code, twin.code, pending.code, "junk"]})
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.testzip() is None
    names = archive.namelist()
    assert names == ["etc_passwd/ComfyUI_00001_.png", f"etc_passwd/{twin.code}-ComfyUI_00001_.png", "manifest.json"]
    assert archive.read(names[0]) == b"\x89PNG one" and archive.read(names[1]) == b"\x89PNG two"
    manifest = json.loads(archive.read("manifest.json"))["outputs"]
    assert [(m["output_id"], m["path"], m["skipped"]) for m in manifest] == [
        (str(first.code), names[0], None),
        (str(twin.code), names[1], None),
        (str(pending.code), None, "not archived"),
    ]
    assert manifest[0]["run_id"] == str(run.code) and manifest[0]["sha256"] == "ab" * 32


def test_the_gallery_zip_hides_other_orgs_and_refuses_empty_selections(client, charlie, alice, provider, make_run):
    output = archived_output(make_run(provider), "a.png", b"a")
    client.force_login(charlie)
    assert client.post("/gallery/download/", {"output": [output.code]}).status_code == 404
    client.force_login(alice)
    assert client.post("/gallery/download/", {}).status_code == 400
    assert client.get("/gallery/download/").status_code == 405
