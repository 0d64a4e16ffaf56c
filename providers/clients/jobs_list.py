"""The `GET /api/jobs` list that OSS ComfyUI (recent builds) and Comfy Cloud v1 share (docs/providers.md).

`{jobs: [JobEntry], pagination: {offset, limit, total, has_more}}`, filtered by comma-separated
statuses, newest first. An entry carries the status, times, error and `outputs_count` with one
`preview_output`, never the full outputs: `whole_outputs` tells when the preview is all there is.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from providers.clients.base import ProviderClient, RunSnapshot

IN_FLIGHT = "pending,in_progress"
FINISHED = "completed,failed,cancelled"
_FINAL = frozenset(FINISHED.split(","))
PAGE_SIZE = 1000  # Comfy Cloud's maximum page size
MAX_PAGES = 20  # per list and client: 20,000 jobs read at most
# Pages asked for at once once the list's total is known: 10,000 finished jobs take 4 round trips, not 10.
CONCURRENT_PAGES = 4


class JobList(BaseModel):
    model_config = ConfigDict(extra="allow")

    jobs: list[dict[str, Any]]
    pagination: dict[str, Any] | None = None


class Page(NamedTuple):
    jobs: list[dict[str, Any]]  # the entries that have an id
    entries: int  # how many entries the page had: a server may cap pages below PAGE_SIZE
    more: bool  # whether more pages follow
    total: int | None  # how many jobs the whole list holds, when the server says


async def read_page(client: ProviderClient, statuses: str, offset: int) -> Page:
    """One page of the list, newest first; the next page starts at this offset plus its `count`."""
    params = {"status": statuses, "sort_order": "desc", "limit": PAGE_SIZE, "offset": offset}
    response = await client.request("GET", "api/jobs", params=params)
    body = client.validate(JobList, client.json(response), f"{client.label} GET /api/jobs")
    jobs = [entry for entry in body.jobs if isinstance(entry.get("id"), str)]
    pagination = body.pagination or {}
    total = pagination.get("total")
    more = bool(body.jobs) and pagination.get("has_more") is not False
    return Page(jobs, len(body.jobs), more, total if isinstance(total, int) and not isinstance(total, bool) else None)


class FinishedJobs:
    """Finished-list entries one client has read, by job id. A client lives for one sweep, and a finished
    job stays finished, so the sweep's later batches find theirs without reading the list again."""

    def __init__(self, client: ProviderClient) -> None:
        self.client = client
        self.entries: dict[str, dict[str, Any]] = {}
        self.pages = 0
        self.offset = 0
        self.ended = False
        self.page_size = 0  # the server's, learnt from the first page
        self.total: int | None = None

    async def read_until(self, wanted: set[str]) -> None:
        """Read further pages until every wanted id was seen, the list ends, or MAX_PAGES pages in all
        (the server may hold far more jobs than comfytrack follows). Jobs that finish later in the sweep
        sit in pages already read: they are not found here and are fetched on their own.

        The first page comes alone; once it told the list's total, up to CONCURRENT_PAGES of the pages
        still needed are asked for at once. A page that fails raises after the pages before it are kept.
        """
        while self.pages < MAX_PAGES and not self.ended and not wanted <= self.entries.keys():
            offsets = self._next_offsets()
            pages = await asyncio.gather(
                *(read_page(self.client, FINISHED, offset) for offset in offsets), return_exceptions=True
            )
            for offset, page in zip(offsets, pages, strict=True):
                if offset != self.offset or self.ended:
                    break  # an earlier page was short (the list moved, or the server caps pages): read on from there
                if isinstance(page, BaseException):
                    raise page
                self._keep(page)

    def _next_offsets(self) -> list[int]:
        if self.total is None or not self.page_size:
            return [self.offset]
        left = math.ceil((self.total - self.offset) / self.page_size)
        count = max(1, min(CONCURRENT_PAGES, MAX_PAGES - self.pages, left))
        return [self.offset + index * self.page_size for index in range(count)]

    def _keep(self, page: Page) -> None:
        if not self.pages:
            self.page_size, self.total = page.entries, page.total
        self.pages += 1
        self.offset += page.entries
        for entry in page.jobs:
            # Only what is final is kept for later batches (a server might ignore the status filter).
            if entry.get("status") in _FINAL:
                self.entries.setdefault(entry["id"], entry)
        self.ended = not page.more

    def answers(
        self, ids: Iterable[str], snapshot_of: Callable[[str, dict[str, Any]], RunSnapshot | None]
    ) -> dict[str, RunSnapshot]:
        """The snapshots of the ids whose kept entries tell everything (`snapshot_of` gives None otherwise)."""
        found: dict[str, RunSnapshot] = {}
        for job_id in ids:
            entry = self.entries.get(job_id)
            if entry is not None and (snapshot := snapshot_of(job_id, entry)) is not None:
                found[job_id] = snapshot
        return found


def whole_outputs(entry: dict[str, Any]) -> list[dict[str, Any]] | None:
    """A finished entry's output items when the entry shows them all, else None (fetch the job itself).

    ComfyUI's get_outputs_summary counts every file item in `outputs_count` and picks one of them as
    `preview_output` (tagged with `nodeId` and `mediaType`): with a count of 0 or 1, that is all of them.
    Comfy Cloud's entries have the same shape, tags included (fixtures/comfy-cloud/jobs_list.json), so
    the same rule is read into them; its spec only says "total number of output files".
    An entry without an end time is not whole either (the snapshot would have to guess when it ended).
    """
    if entry.get("execution_end_time") is None:
        return None
    count, preview = entry.get("outputs_count"), entry.get("preview_output")
    if count == 0:
        return []
    is_file = isinstance(preview, dict) and isinstance(preview.get("filename"), str) and bool(preview["filename"])
    if count == 1 and is_file and isinstance(preview, dict) and isinstance(preview.get("nodeId"), str | int):
        return [preview]
    return None
