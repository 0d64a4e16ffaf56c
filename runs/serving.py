"""How an archived output is served: the one decision between "show it" and "download it".

Archived bytes come from providers and may be anything, including HTML or SVG that would run script in
our origin. Only a raster image, video or audio whose bytes `runs.content` verified at archive time is
served inline, with the type those bytes showed; everything else is an attachment of type
`application/octet-stream`. Every file response also carries `nosniff` and a sandboxing CSP, so even a
mistake here cannot run script. The same answer is meant for any storage: the local file responses use
`headers()`, a presigned S3 link passes `content_type` and `disposition` as ResponseContentType and
ResponseContentDisposition.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.http import content_disposition_header

OCTET_STREAM = "application/octet-stream"
# A browser shows these itself (image viewer, media player) and never runs them; SVG is not here on purpose.
INLINE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/gif",
        "image/bmp",
        "video/mp4",
        "video/webm",
        "video/ogg",
        "video/quicktime",
        "audio/mpeg",
        "audio/wav",
        "audio/ogg",
        "audio/flac",
        "audio/mp4",
        "audio/aac",
    }
)
# No script, no plugins, an opaque origin. The browser's own image and media viewers still load the file
# and style themselves with inline styles (style cannot run script).
FILE_CSP = "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; sandbox"
# Thumbnails are always WebP we encoded ourselves with Pillow (runs.archive.make_thumbnail).
THUMBNAIL_TYPE = "image/webp"


@dataclass(frozen=True)
class Served:
    content_type: str
    inline: bool
    disposition: str  # the Content-Disposition header value


def inline_type(content_type: str, verified: bool) -> str | None:
    """The type to show the file inline with, or None when it must only ever be downloaded."""
    if verified and content_type in INLINE_TYPES:
        return content_type
    return None


def decide(content_type: str, verified: bool, filename: str, *, download: bool = False) -> Served:
    """How to serve a file whose archived bytes showed `content_type` (`verified` by runs.content)."""
    shown = None if download else inline_type(content_type, verified)
    inline = shown is not None
    disposition = content_disposition_header(not inline, filename or "output") or "attachment"
    return Served(shown or OCTET_STREAM, inline, disposition)


def for_output(output, *, download: bool = False) -> Served:
    """The decision for a RunOutput's archived file."""
    return decide(output.content_type, output.content_verified, output.filename, download=download)


def for_thumbnail(output) -> Served:
    """Thumbnails are our own WebP; an image without one falls back to its file, decided as above."""
    if output.thumbnail:
        return decide(THUMBNAIL_TYPE, True, f"{output.code}.webp")
    return for_output(output)


def headers(served: Served) -> dict[str, str]:
    """Every header a file response carries (the caller adds caching)."""
    return {
        "Content-Type": served.content_type,
        "Content-Disposition": served.disposition,
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": FILE_CSP,
        "Cross-Origin-Resource-Policy": "same-origin",
    }
