from __future__ import annotations

from datetime import timedelta

import pytest
from django.http import QueryDict
from django.utils import timezone

from runs.models import Run, Status
from runs.queries import BadCursor, decode_cursor, filter_runs, paginate, parse_filters, parse_limit
from runs.stats import compute_stats, percentile

WORKFLOW = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 424242, "steps": 20, "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl_base.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "A Red Fox in snow", "clip": ["4", 1]}},
}


def runs_of(org):
    return Run.objects.filter(organization=org)


def test_it_filters_by_several_statuses_provider_and_problems(org, provider, make_provider, make_run):
    other = make_provider(org, name="Other")
    make_run(provider, status=Status.FAILED)
    make_run(provider, status=Status.SUCCEEDED)
    make_run(other, status=Status.LOST)
    filters = parse_filters(QueryDict("status=problems"), org)
    assert sorted(filter_runs(runs_of(org), filters).values_list("status", flat=True)) == ["failed", "lost"]
    filters = parse_filters(QueryDict("status=failed,succeeded&provider=Deploy"), org)
    assert filter_runs(runs_of(org), filters).count() == 2
    filters = parse_filters(QueryDict(f"provider={other.code}"), org)
    assert list(filter_runs(runs_of(org), filters).values_list("status", flat=True)) == ["lost"]


def test_it_reports_bad_filters_instead_of_failing(org, other_org, make_provider):
    theirs = make_provider(other_org, name="Theirs")
    filters = parse_filters(QueryDict(f"status=bogus&provider={theirs.code}&created_after=yesterday&origin=x"), org)
    assert len(filters.errors) == 4
    assert not filters.providers and not filters.statuses and filters.created_after is None


def test_it_names_the_field_of_each_bad_filter(org):
    # Values that mention other filters' names: the field comes from the parser, not the wording.
    query = "status=provider&origin=status&provider=created_after&created_after=origin&created_before=status"
    filters = parse_filters(QueryDict(query), org)
    assert [e.field for e in filters.errors] == ["status", "origin", "provider", "created_after", "created_before"]
    assert str(filters.errors[2]) == "Unknown provider 'created_after'."


def test_it_drops_nul_characters_from_every_filter(org):
    filters = parse_filters(QueryDict("q=%00fo%00x&status=fail%00ed&provider=%00&origin=%00&created_after=%00"), org)
    assert filters.q == "fox" and filters.statuses == ["failed"] and not filters.providers
    assert not filters.errors and filters.created_after is None


def test_it_searches_external_id_prompt_seed_and_checkpoint(provider, make_run, org):
    make_run(provider, "job-abc", workflow=WORKFLOW)
    make_run(provider, "job-xyz", workflow={})
    for q in ("red fox", "424242", "sdxl_base", "JOB-ABC", "ksampler"):
        found = filter_runs(runs_of(org), parse_filters({"q": q}, org))
        assert list(found.values_list("external_id", flat=True)) == ["job-abc"], q


def test_cursor_pages_have_no_duplicates_or_gaps_while_runs_arrive(provider, make_run, org):
    base = timezone.now() - timedelta(hours=1)
    for i in range(7):
        make_run(provider, f"r{i}", created=base + timedelta(seconds=i // 2))  # ties on created
    seen, cursor = [], None
    while True:
        page, cursor = paginate(runs_of(org), cursor, 3)
        seen += [r.external_id for r in page]
        make_run(provider)  # a newer run arriving between pages must not shift them
        if cursor is None:
            break
    assert sorted(seen[:7]) == [f"r{i}" for i in range(7)] and len(set(seen)) == len(seen)


def test_bad_cursors_and_limits_are_clear_errors():
    for cursor in ("nonsense", "", "Zm9v"):
        with pytest.raises(BadCursor):
            decode_cursor(cursor)
    for limit in ("0", "201", "ten"):
        with pytest.raises(ValueError, match="from 1 to 200"):
            parse_limit(limit)
    assert parse_limit(None) == 50


def test_stats_top_failures_count_first_lines_across_messages(org, provider, make_provider, make_run):
    """Messages that differ after their first line count as one reason; a run without a message (or with
    a blank one, or no error at all) is "(no message)"; the commonest come first, across providers."""
    other = make_provider(org, name="Other")
    for text in ["CUDA out of memory\nat node 3", "CUDA out of memory\nat node 7", "CUDA out of memory"]:
        make_run(provider, status=Status.FAILED, error={"message": text})
    make_run(other, status=Status.TIMED_OUT, error={"message": "CUDA out of memory"})
    make_run(provider, status=Status.FAILED, error={"message": "x" * 300})
    make_run(provider, status=Status.LOST)
    make_run(other, status=Status.FAILED, error={"message": "   "})
    make_run(provider, status=Status.FAILED, error={"node_id": "3"})
    make_run(provider, status=Status.SUCCEEDED, error={"message": "not a failure"})
    stats = compute_stats(runs_of(org), timezone.now() - timedelta(days=1))
    assert stats.top_failures == [("CUDA out of memory", 4), ("(no message)", 3), ("x" * 160, 1)]
    totals = {p.name: (p.total, p.finished, p.succeeded) for p in stats.providers}
    assert totals == {"Other": (2, 2, 0), provider.name: (7, 7, 1)}


def test_stats_count_rates_and_percentiles(org, provider, make_run):
    now = timezone.now()
    for seconds in (10, 20, 30, 40):
        make_run(
            provider,
            status=Status.SUCCEEDED,
            created=now - timedelta(minutes=5),
            started=now - timedelta(minutes=5) + timedelta(seconds=2),
            finished=now - timedelta(minutes=5) + timedelta(seconds=2 + seconds),
            created_source="provider",
            started_source="provider",
            finished_source="provider",
        )
    # Times comfytrack only observed (a poll's guess) stay out of the percentiles.
    make_run(
        provider,
        status=Status.SUCCEEDED,
        created=now - timedelta(minutes=5),
        started=now - timedelta(minutes=4),
        finished=now,
        started_source="observed",
        finished_source="observed",
    )
    make_run(provider, status=Status.FAILED, error={"message": "CUDA out of memory"})
    make_run(provider, status=Status.RUNNING)
    stats = compute_stats(runs_of(org), now - timedelta(days=1))
    assert (stats.total, stats.finished, stats.success_rate) == (7, 6, round(5 / 6, 4))
    entry = stats.providers[0]
    assert (entry.queue_p50, entry.run_p50, entry.run_p95) == (2.0, 20.0, 40.0)
    assert stats.top_failures == [("CUDA out of memory", 1)]
    assert percentile([], 0.5) is None
