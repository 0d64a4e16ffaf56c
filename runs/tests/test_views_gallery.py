"""Gallery, lightbox and archived files served only to members of the run's organization."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from runs.backfill import caption_runs
from runs.models import Run, RunOutput, Status
from runs.tracking import track_run, track_runs

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")


@pytest.fixture
def output(provider, make_run):
    run = make_run(
        provider,
        "gallery-run",
        status=Status.SUCCEEDED,
        workflow={"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a blue whale"}}},
    )
    out = RunOutput(run=run, key="k1", kind="image", filename="whale.png", content_type="image/png")
    out.file.save("whale.png", ContentFile(PNG), save=False)
    out.thumbnail.save("whale-thumb.png", ContentFile(PNG), save=False)
    out.archived = timezone.now()
    out.save()
    return out


def test_it_shows_outputs_as_a_grid(client, alice, output):
    client.force_login(alice)
    content = client.get("/gallery/").content.decode()
    assert f"/outputs/{output.code}/thumbnail/" in content and f'hx-get="/outputs/{output.code}/"' in content


def test_the_lightbox_shows_key_inputs_and_a_download(client, alice, output):
    client.force_login(alice)
    fragment = client.get(f"/outputs/{output.code}/", headers={"HX-Request": "true"}).content.decode()
    assert fragment.lstrip().startswith("<dialog") and "a blue whale" in fragment and "?download=1" in fragment
    page = client.get(f"/outputs/{output.code}/").content.decode()
    assert "<html" in page and "a blue whale" in page


def test_it_serves_files_and_thumbnails_to_members(client, bob, output):
    client.force_login(bob)
    response = client.get(f"/outputs/{output.code}/file/?download=1")
    assert response.status_code == 200 and b"".join(response.streaming_content) == PNG
    assert "attachment" in response["Content-Disposition"]
    assert client.get(f"/outputs/{output.code}/thumbnail/").status_code == 200


def test_an_unarchived_output_with_an_expired_link_is_a_clear_404(client, alice, provider, make_run):
    run = make_run(provider, status=Status.SUCCEEDED)
    out = RunOutput.objects.create(
        run=run,
        key="k",
        kind="image",
        filename="x.png",
        provider_url="https://example.com/x.png",
        provider_url_expires=timezone.now() - timedelta(hours=1),
    )
    client.force_login(alice)
    assert client.get(f"/outputs/{out.code}/file/").status_code == 404
    assert "Archiving…" in client.get("/gallery/").content.decode()  # a placeholder, not a broken image


def test_it_filters_by_kind_and_provider(client, alice, output, org, make_provider):
    client.force_login(alice)
    assert b"whale.png" not in client.get("/gallery/?kind=video").content
    assert b"whale.png" in client.get("/gallery/?kind=image").content
    other = make_provider(org, name="Other")
    assert b"whale.png" not in client.get(f"/gallery/?provider={other.code}").content
    bad = client.get("/gallery/?kind=hologram&cursor=%%%&created_after=soon")
    assert bad.status_code == 200 and b"Unknown kind" in bad.content and b"cursor is not valid" in bad.content


def test_it_reports_bad_gallery_filters_whatever_their_wording(client, alice, output):
    client.force_login(alice)
    content = client.get("/gallery/?provider=status-box&created_after=original&status=bogus").content.decode()
    assert "Unknown provider &#x27;status-box&#x27;" in content and "created_after must be a date" in content
    assert "Unknown status &#x27;bogus&#x27;" in content


def test_it_paginates(client, alice, provider, make_run):
    run = make_run(provider, status=Status.SUCCEEDED)
    for i in range(65):
        RunOutput.objects.create(run=run, key=f"k{i}", kind="file", filename=f"f{i}.txt")
    client.force_login(alice)
    first = client.get("/gallery/")
    assert len(first.context["outputs"]) == 60 and first.context["next_cursor"]
    second = client.get(f"/gallery/?cursor={first.context['next_cursor']}")
    assert len(second.context["outputs"]) == 5


def test_it_hides_other_orgs(client, charlie, output):
    client.force_login(charlie)
    assert b"whale.png" not in client.get("/gallery/").content
    for url in ("/", "/file/", "/thumbnail/"):
        assert client.get(f"/outputs/{output.code}{url}").status_code == 404


def test_anonymous_users_get_no_files(client, output):
    assert client.get(f"/outputs/{output.code}/file/").status_code == 302


def test_it_filters_by_run_status_and_search_and_captions_tiles(client, alice, provider, make_run):
    fox = make_run(
        provider,
        status=Status.SUCCEEDED,
        workflow={"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox"}}},
    )
    owl = make_run(
        provider, status=Status.FAILED, workflow={"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "an owl"}}}
    )
    RunOutput.objects.create(run=fox, key="f", kind="image", filename="fox.png")
    RunOutput.objects.create(run=owl, key="o", kind="image", filename="owl.png")
    client.force_login(alice)
    everything = client.get("/gallery/").content.decode()
    assert "fox.png" in everything and "owl.png" in everything
    assert "a red fox" in everything and provider.name in everything  # the hover/focus caption
    found = client.get("/gallery/?q=fox").content.decode()
    assert "fox.png" in found and "owl.png" not in found
    failed = client.get("/gallery/?status=failed").content.decode()
    assert "owl.png" in failed and "fox.png" not in failed
    assert "match these filters" in client.get("/gallery/?q=zebra").content.decode()


FOX = {"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox"}}}


def test_a_run_keeps_its_caption_and_the_backfill_fills_old_ones(provider, make_run):
    run = make_run(provider, workflow=FOX)
    assert run.caption == "a red fox"
    assert make_run(provider, workflow=FOX, inputs={"6.text": "a wolf"}).caption == "a wolf"  # the run's inputs win
    assert make_run(provider).caption == ""
    Run.objects.filter(pk=run.pk).update(caption="")
    assert caption_runs(Run) == 1
    assert Run.objects.get(pk=run.pk).caption == "a red fox"
    assert caption_runs(Run) == 0


def test_tiles_show_the_stored_caption_without_reading_the_graph(client, alice, provider, make_run):
    run = make_run(provider, status=Status.SUCCEEDED, workflow=FOX)
    RunOutput.objects.create(run=run, key="f", kind="image", filename="fox.png")
    Run.objects.filter(pk=run.pk).update(caption="what the column says")
    client.force_login(alice)
    page = client.get("/gallery/").content.decode()
    assert "what the column says" in page and "a red fox" not in page


def test_tracked_runs_get_their_caption_from_the_graph_they_are_registered_or_found_with(provider):
    run, _ = track_run(provider, "with-graph", workflow=FOX)
    assert run.caption == "a red fox"
    (result,) = track_runs(provider, ["bulk-with-graph"], workflow=FOX)
    assert result.run_code is not None
    assert Run.objects.get(code=result.run_code).caption == "a red fox"
    found = Run(external_id="later").provider_graph_fields(FOX)
    assert found["caption"] == "a red fox"
