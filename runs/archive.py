"""The output archive: copy every run output into Django storage before the provider's link expires.

1. `claim_due_outputs` leases a batch of unarchived, due outputs by pushing `next_archive_after`
   forward, in one short transaction (`comfytrack.leases`).
2. `download_batch` groups them by provider + credential and downloads them concurrently on one
   event loop, outside any transaction, through `comfytrack.safe_http` (provider URLs are untrusted).
3. `store_result` writes each file, its checksum, the type its bytes show (`runs.content`),
   dimensions and thumbnail, then marks the output archived with a conditional UPDATE
   (`archived IS NULL`), so an output is never archived twice. Failures back off exponentially;
   one bad output never stalls the batch.

Plain module, no django-q2 imports: `runs.sync.sync_due_runs` calls `archive_due_outputs` at the end.
"""

from __future__ import annotations

import asyncio
import glob
import io
import logging
import os
import shutil
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.db import DatabaseError
from django.utils import timezone
from PIL import Image

from comfytrack import net
from comfytrack.leases import Holder, Lease
from comfytrack.safe_http import Downloaded, DownloadError, HostGuard, SafeDownloader
from providers.clients.base import DownloadRequest, OutputKind, OutputRef
from runs.content import IMAGE_FORMATS, sniff
from runs.models import RunOutput

logger = logging.getLogger("runs.archive")

BATCH_SIZE = 200
THUMBNAIL_SIZE = 320
# A 403/404/410 after the link's expiry means it is gone; a few retries cover clock skew and a
# sync that re-signs the URL meanwhile, then we stop.
EXPIRED_GIVE_UP_AFTER = 3
EXPIRED_MESSAGE = "The provider link expired before it could be archived."
MAX_ATTEMPTS = 10
# Any other 4xx is tried this many times before it counts as final.
CLIENT_ERROR_GIVE_UP_AFTER = 3
MAX_BACKOFF = timedelta(hours=6)
# Downloads go to a directory of this prefix per batch, under the system's temp directory.
TEMP_PREFIX = "ct-archive-"
# A claimed output is leased for 90 s (its due time pushed that far) and renewed every 20 s while its batch
# is in hand, so the outputs of a worker that died are archived by another within two minutes (before
# short-lived links expire).
LEASE = Lease(RunOutput, "next_archive_after", timedelta(seconds=90), renew_every=20.0)
# The allow-list of private hosts; refusals name it so an operator knows what to change.
ALLOW_PRIVATE_SETTING = "COMFYTRACK_ARCHIVE_ALLOW_PRIVATE_HOSTS"


@dataclass(frozen=True)
class BatchOutcome:
    claimed: int = 0
    archived: int = 0


def archive_due_outputs(limit: int = BATCH_SIZE, now: datetime | None = None) -> int:
    """Archive up to `limit` due outputs; returns how many were archived. Never raises."""
    return archive_due_batch(limit, now).archived


def archive_due_batch(limit: int = BATCH_SIZE, now: datetime | None = None) -> BatchOutcome:
    """Claim and archive up to `limit` due outputs; returns how many were claimed and archived. Never raises."""
    remove_stale_temp_dirs()
    try:
        outputs = claim_due_outputs(limit, now=now)
    except Exception:
        logger.exception("claiming outputs to archive failed")
        return BatchOutcome()
    if not outputs:
        return BatchOutcome()
    # Every download of the batch lands in this directory, removed with whatever is left in it however
    # the batch ends (store_result also removes each file as soon as it is stored).
    with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX) as temp_dir:
        try:
            results = download_batch(outputs, temp_dir)
        except Exception:
            logger.exception("output archive batch failed")
            return BatchOutcome(len(outputs), 0)
        archived = 0
        held = Holder(LEASE, (output.pk for output in outputs))
        for output in outputs:
            archived += store_result(output, results.get(output.pk))
            held.done([output.pk])
            held.maybe_renew()
    return BatchOutcome(len(outputs), archived)


def remove_stale_temp_dirs(older_than: timedelta = timedelta(hours=1)) -> int:
    """Remove batch directories a killed worker left behind (none is in use for longer than a batch)."""
    removed = 0
    cutoff = time.time() - older_than.total_seconds()
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{TEMP_PREFIX}*")):
        try:
            if os.path.isdir(path) and os.path.getmtime(path) < cutoff:
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        except OSError:
            continue
    return removed


def claim_due_outputs(limit: int, now: datetime | None = None) -> list[RunOutput]:
    """Lease up to `limit` due outputs: two workers never download the same output while its lease lasts."""
    now = now or timezone.now()
    due = (
        RunOutput.objects.filter(archived=None, next_archive_after__lte=now)
        .exclude(provider_url="")
        .order_by("next_archive_after")
        .select_related("run__provider", "run__credential")
    )
    return LEASE.claim(due, limit, now=now)


# -- downloading -------------------------------------------------------------------------------


@dataclass
class _Group:
    guard: HostGuard
    requests: dict[int, DownloadRequest]


def download_batch(outputs: list[RunOutput], temp_dir: str | None = None) -> dict[int, Downloaded | DownloadError]:
    """Download every output of the batch; one event loop, bounded concurrency, no ORM inside."""
    by_account: dict[tuple[int, int | None], list[RunOutput]] = defaultdict(list)
    for output in outputs:
        by_account[(output.run.provider_id, output.run.credential_id)].append(output)
    groups = [_plan_group(group) for group in by_account.values()]
    # The downloads run on a thread of their own (no database there) while this thread renews the leases.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive-download") as pool:
        held = Holder(LEASE, (output.pk for output in outputs))
        return held.wait(pool.submit(asyncio.run, _download_groups(groups, temp_dir)))


def _plan_group(outputs: list[RunOutput]) -> _Group:
    """The guard and first request per output. Auth headers come from the provider's client, own host only."""
    run = outputs[0].run
    try:
        client = run.provider.client(run.credential)
    except Exception as exc:
        # No usable client (unreadable secret, unknown kind): signed URLs still work without auth.
        logger.warning("archive: no client for provider %s (%s); downloading without auth", run.provider.code, exc)
        guard = _guard(run.provider.base_url or None)
        return _Group(guard, {o.pk: DownloadRequest(o.provider_url, {}) for o in outputs})
    return _Group(_guard(client.base_url), {o.pk: client.download_request(_output_ref(o)) for o in outputs})


def _guard(base_url: str | None) -> HostGuard:
    allowed = getattr(settings, ALLOW_PRIVATE_SETTING, [])
    return HostGuard.for_base_url(base_url, allowed, purpose="fetch from", setting=ALLOW_PRIVATE_SETTING)


def _output_ref(output: RunOutput) -> OutputRef:
    kind = OutputKind(output.kind) if output.kind in OutputKind._value2member_map_ else OutputKind.FILE
    return OutputRef(
        key=output.key,
        filename=output.filename,
        kind=kind,
        url=output.provider_url,
        node_id=output.node_id or None,
        url_expires=output.provider_url_expires,
    )


async def _download_groups(groups: list[_Group], temp_dir: str | None) -> dict[int, Downloaded | DownloadError]:
    limit = asyncio.Semaphore(_concurrency())
    results: dict[int, Downloaded | DownloadError] = {}

    async def one(downloader: SafeDownloader, pk: int, request: DownloadRequest) -> None:
        async with limit:
            try:
                results[pk] = await downloader.download(request.url, request.headers)
            except DownloadError as exc:
                results[pk] = exc
            except Exception as exc:
                logger.exception("archive: unexpected error downloading output %s", pk)
                results[pk] = DownloadError(f"Unexpected error while downloading: {type(exc).__name__}.")

    async def group_task(group: _Group) -> None:
        async with SafeDownloader(
            group.guard, max_bytes=_max_bytes(), deadline=_deadline(), max_connections=_concurrency(), temp_dir=temp_dir
        ) as downloader:
            await asyncio.gather(*(one(downloader, pk, req) for pk, req in group.requests.items()))

    await asyncio.gather(*(group_task(g) for g in groups))
    return results


# -- storing -----------------------------------------------------------------------------------


def store_result(output: RunOutput, result: Downloaded | DownloadError | None) -> int:
    """Record one download (1 if archived, else 0); never raises (crash guard)."""
    now = timezone.now()
    try:
        if isinstance(result, Downloaded):
            return _store_file(output, result, now)
        _record_failure(output, result or DownloadError("The download did not run."), now)
    except Exception as exc:
        attempts = output.archive_attempts + 1
        message = storing_error(exc)
        if isinstance(exc, OSError):
            logger.error("archive of output %s failed: %s", output.code, message)
        else:
            logger.exception("archive of output %s failed", output.code)
        next_try: datetime | None = now + download_retry_delay(attempts)
        if attempts >= MAX_ATTEMPTS:
            message, next_try = f"{message} Gave up after {attempts} attempt(s).", None
        RunOutput.objects.filter(pk=output.pk, archived=None).update(
            archive_attempts=attempts, archive_error=message, next_archive_after=next_try
        )
    finally:
        if isinstance(result, Downloaded) and os.path.exists(result.path):
            os.unlink(result.path)
    return 0


def _store_file(output: RunOutput, result: Downloaded, now: datetime) -> int:
    """Save the file and thumbnail, then flip `archived` only if nobody else did (else remove ours)."""
    # The bytes decide the type and whether it may ever be shown inline, not the name or the header.
    sniffed = sniff(result.path)
    name = f"{output.code}{sniffed.extension}"  # never the provider's filename: no path tricks
    file_field, thumb_field = output.file, output.thumbnail
    thumbnail = make_thumbnail(result.path) if sniffed.width else None
    written = StoredFiles()
    try:
        with open(result.path, "rb") as body:
            written.save(output, file_field, name, File(body))
        if thumbnail is not None:
            written.save(output, thumb_field, f"{output.code}{thumbnail[1]}", ContentFile(thumbnail[0]))
        updated = RunOutput.objects.filter(pk=output.pk, archived=None).update(
            file=file_field.name,
            thumbnail=thumb_field.name or "",
            sha256=result.sha256,
            size_bytes=result.size,
            content_type=sniffed.content_type,
            content_verified=sniffed.verified,
            width=sniffed.width or output.width,
            height=sniffed.height or output.height,
            archived=now,
            archive_error="",
            next_archive_after=None,
        )
    except BaseException:
        written.remove()  # a failed archive leaves nothing in storage
        raise
    if updated != 1:
        # Another worker archived it after our lease ran out: keep theirs, drop our copy.
        written.remove()
        return 0
    return 1


class StoredFiles:
    """The files one archive wrote to storage, so that a failure part-way removes all of them."""

    def __init__(self) -> None:
        self.written: list[tuple[Storage, str]] = []

    def save(self, output: RunOutput, field, name: str, content: File) -> None:
        storage, max_length = field.storage, field.field.max_length
        # The name the storage will use, known before writing: a write that fails part-way (a full
        # disk) may leave a partial file there, which Storage.save does not remove.
        target = storage.get_available_name(field.field.generate_filename(output, name), max_length=max_length)
        self.written.append((storage, target))
        saved = storage.save(target, content, max_length=max_length)
        if saved != target:
            self.written.append((storage, saved))
        field.name = saved

    def remove(self) -> None:
        for storage, name in self.written:
            _delete_quietly(storage, name)
        self.written = []


def storing_error(exc: BaseException) -> str:
    """What went wrong while storing an archived file, in words a person can act on."""
    if isinstance(exc, OSError) and exc.errno is not None:
        reason = exc.strerror or os.strerror(exc.errno)
        return f"{reason} writing to media storage."
    if isinstance(exc, DatabaseError):
        return "The database was unavailable while recording the archived file; it will be tried again."
    bucket_error = _bucket_error(exc)
    if bucket_error:
        return bucket_error
    return f"Internal error while archiving ({type(exc).__name__})."


def _bucket_error(exc: BaseException) -> str | None:
    """An S3-compatible bucket's refusal (its error code) or an unreachable endpoint, in words."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code") or "an error"
        return f"The object storage refused to store the file ({code})."
    if isinstance(exc, BotoCoreError):
        return f"The object storage could not be reached ({type(exc).__name__}); it will be tried again."
    return None


def _record_failure(output: RunOutput, error: DownloadError, now: datetime) -> None:
    attempts = output.archive_attempts + 1
    message = error.message
    next_try: datetime | None = now + download_retry_delay(attempts, output.provider_url_expires, now)
    expires = output.provider_url_expires
    link_gone = error.status_code in (403, 404, 410) and (expires is None or expires <= now)
    if link_gone:
        message = f"{EXPIRED_MESSAGE} ({error.message})"
        if attempts >= EXPIRED_GIVE_UP_AFTER:
            next_try = None
    elif error.status_code is not None and 400 <= error.status_code < 500 and attempts < CLIENT_ERROR_GIVE_UP_AFTER:
        pass  # storage URLs answer a 4xx for passing reasons too (a link signed a moment too early, a proxy)
    elif error.permanent or attempts >= MAX_ATTEMPTS:
        # Refused (SSRF), too large or a 4xx again and again: retrying the same URL will not help.
        message = f"{message} Gave up after {attempts} attempt(s)."
        next_try = None
    RunOutput.objects.filter(pk=output.pk, archived=None).update(
        archive_attempts=attempts, archive_error=message[:2000], next_archive_after=next_try
    )


def download_retry_delay(attempts: int, expires: datetime | None = None, now: datetime | None = None) -> timedelta:
    """After `attempts` failed downloads: 1 min · 2^(attempts-1), at most MAX_BACKOFF, but try once more
    before a known expiry of the provider's link."""
    delay = net.backoff(attempts - 1, base=60.0, cap=MAX_BACKOFF.total_seconds())
    if expires is not None and now is not None and expires - timedelta(seconds=30) > now:
        delay = min(delay, max(expires - now - timedelta(seconds=30), timedelta(seconds=10)))
    return delay


def _delete_quietly(storage, name: str | None) -> None:
    if not name:
        return
    try:
        storage.delete(name)
    except Exception:
        logger.warning("archive: could not delete %s from storage", name)


# -- thumbnails ---------------------------------------------------------------------------------


def make_thumbnail(path: str) -> tuple[bytes, str] | None:
    """A WebP at most THUMBNAIL_SIZE px on its longest side; None if the image won't decode."""
    try:
        with Image.open(path, formats=list(IMAGE_FORMATS)) as opened:
            opened.draft("RGB", (THUMBNAIL_SIZE, THUMBNAIL_SIZE))  # JPEG: decode at reduced size
            opened.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
            image: Image.Image = opened
            if image.mode not in ("RGB", "RGBA"):
                image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
            buffer = io.BytesIO()
            image.save(buffer, format="WEBP", quality=80)
            return buffer.getvalue(), ".webp"
    except Exception:
        # Truncated or hostile image data (incl. decompression bombs): archive the file without a thumbnail.
        logger.warning("archive: could not make a thumbnail for %s", os.path.basename(path), exc_info=True)
        return None


def _max_bytes() -> int:
    return int(getattr(settings, "COMFYTRACK_ARCHIVE_MAX_BYTES", 200 * 1024 * 1024))


def _deadline() -> float:
    return float(getattr(settings, "COMFYTRACK_ARCHIVE_TIMEOUT", 60))


def _concurrency() -> int:
    return max(1, int(getattr(settings, "COMFYTRACK_ARCHIVE_CONCURRENCY", 8)))
