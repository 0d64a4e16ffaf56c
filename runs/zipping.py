"""A streamed zip of archived outputs with a manifest, written as it is sent.

The standard library's `zipfile` writes to any object with `write`; given one that cannot seek, it puts
each member's sizes and checksum in a data descriptor after its bytes, so nothing has to be held back or
rewritten. `_Pipe` collects what it writes and the generator hands that on between file chunks, so
memory stays at one read chunk however large the files are.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import orjson

from runs.models import RunOutput

READ_CHUNK = 256 * 1024
MAX_ZIP_OUTPUTS = 500
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class _Pipe:
    """A write-only, unseekable file: zipfile writes into it, the generator drains it."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def drain(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def safe_name(text: str, fallback: str) -> str:
    """A zip member name part with no path separators, dot-dot or control characters."""
    cleaned = _UNSAFE.sub("_", text).strip("._")[:120]
    return cleaned or fallback


def member_name(output: RunOutput, taken: set[str]) -> str:
    """`<run external id or code>/<file name>`, unique within the zip."""
    folder = safe_name(output.run.external_id, str(output.run.code))
    stem = safe_name(output.filename, str(output.code))
    name = f"{folder}/{stem}"
    if name in taken:
        name = f"{folder}/{output.code}-{stem}"
    taken.add(name)
    return name


def manifest_entry(output: RunOutput, name: str | None, skipped: str | None) -> dict[str, Any]:
    run = output.run
    return {
        "path": name,
        "output_id": str(output.code),
        "filename": output.filename,
        "kind": output.kind,
        "content_type": output.content_type,
        "size_bytes": output.size_bytes,
        "sha256": output.sha256 or None,
        "run_id": str(run.code),
        "external_id": run.external_id,
        "provider": run.provider.name,
        "status": run.status,
        "created": output.created.isoformat(),
        "archived": output.archived.isoformat() if output.archived else None,
        "skipped": skipped,
    }


def zip_chunks(outputs: Iterable[RunOutput], now: datetime) -> Iterator[bytes]:
    """The zip's bytes, one file chunk at a time; `manifest.json` last, listing every output asked
    for, with `skipped` saying why one is not in the zip (not archived yet, missing from storage)."""
    pipe = _Pipe()
    manifest, taken = [], {"manifest.json"}
    with zipfile.ZipFile(pipe, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for output in outputs:
            if not output.file:
                manifest.append(manifest_entry(output, None, "not archived"))
                continue
            try:
                handle = output.file.open("rb")
            except OSError:
                manifest.append(manifest_entry(output, None, "missing from storage"))
                continue
            name = member_name(output, taken)
            info = zipfile.ZipInfo(name, date_time=output.created.timetuple()[:6])
            info.compress_type = zipfile.ZIP_STORED  # images and videos are compressed already
            with handle, archive.open(info, "w", force_zip64=True) as member:
                while chunk := handle.read(READ_CHUNK):
                    member.write(chunk)
                    yield pipe.drain()
            manifest.append(manifest_entry(output, name, None))
            yield pipe.drain()
        body = {"created": now.isoformat(), "outputs": manifest}
        archive.writestr("manifest.json", orjson.dumps(body, option=orjson.OPT_INDENT_2))
    yield pipe.drain()
