"""A workflow with a name and a run of it with provider-reported times: the comparison tests' subject, in
the API, page and browser tests alike."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from runs.fingerprint import workflow_fingerprint
from runs.models import Status

GRAPH = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "product-shots"}},
}
OTHER = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8}}}
FP = workflow_fingerprint(GRAPH)


def timed_run(make_run, provider, *, queue, run, status=Status.SUCCEEDED, source="provider", days_ago=1, **fields):
    """A finished run of GRAPH whose times the provider reported (or, with source="observed", did not)."""
    queued = timezone.now() - timedelta(days=days_ago, hours=1)
    started = queued + timedelta(seconds=queue)
    return make_run(
        provider,
        workflow=GRAPH,
        inputs={"3.seed": queue},
        status=status,
        created=queued,
        queued=queued,
        started=started,
        finished=started + timedelta(seconds=run),
        queued_source="provider",
        started_source=source,
        finished_source=source,
        **fields,
    )
