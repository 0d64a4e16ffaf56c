"""What an archived file's bytes are, checked when it is archived.

A provider (or a custom save node) chooses an output's name, its declared type and its bytes, so none
of them is believed. Raster images are opened with Pillow, video and audio are recognised by their
container's magic bytes; only those come back `verified`, with the type the bytes showed. Anything else
(SVG, HTML, scripts, text, archives) is still described for the API (`text/plain`, `application/zip`…)
but stays unverified, and `runs.serving` never shows it inline.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError


@dataclass(frozen=True)
class Sniffed:
    content_type: str
    extension: str
    width: int | None = None
    height: int | None = None
    # True only for a raster image Pillow decoded, or audio/video whose container header matched.
    verified: bool = False


# Raster formats we thumbnail and browsers show. SVG is never an image here: it is a document that runs script.
IMAGE_FORMATS = {
    "PNG": ("image/png", ".png"),
    "JPEG": ("image/jpeg", ".jpg"),
    "WEBP": ("image/webp", ".webp"),
    "GIF": ("image/gif", ".gif"),
    "BMP": ("image/bmp", ".bmp"),
    "TIFF": ("image/tiff", ".tiff"),
}

# ISO base media (MP4/QuickTime) major brands, by the type they mean. HEIF/AVIF images share the
# container and are left out on purpose: they are not video.
_MP4_BRANDS = {
    b"qt  ": ("video/quicktime", ".mov"),
    b"M4A ": ("audio/mp4", ".m4a"),
    b"M4B ": ("audio/mp4", ".m4a"),
    b"M4V ": ("video/mp4", ".m4v"),
    b"M4VP": ("video/mp4", ".m4v"),
    **{
        brand: ("video/mp4", ".mp4")
        for brand in (b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"dash", b"mmp4")
    },
    **{brand: ("video/3gpp", ".3gp") for brand in (b"3gp4", b"3gp5", b"3gp6", b"3gg6")},
}

# Magic numbers of the non-raster outputs workflows make that are neither video nor audio: recognised
# so the API can say what they are, never verified for inline display.
_OTHER_SIGNATURES: tuple[tuple[bytes, str, str], ...] = (
    (b"glTF", "model/gltf-binary", ".glb"),
    (b"%PDF-", "application/pdf", ".pdf"),
    (b"PK\x03\x04", "application/zip", ".zip"),
)


def sniff(path: str) -> Sniffed:
    """The type the file's bytes show; `verified` for raster images, video and audio only."""
    image = _sniff_image(path)
    if image is not None:
        return image
    with open(path, "rb") as f:
        head = f.read(4096)
    media = sniff_media(head)
    if media is not None:
        return media
    for magic, content_type, extension in _OTHER_SIGNATURES:
        if head.startswith(magic):
            return Sniffed(content_type, extension)
    if _is_text(head):
        is_json = head.lstrip()[:1] in (b"{", b"[")
        return Sniffed("application/json", ".json") if is_json else Sniffed("text/plain", ".txt")
    return Sniffed("application/octet-stream", ".bin")


def _sniff_image(path: str) -> Sniffed | None:
    """Pillow must both identify and fully decode the file: a PNG signature in front of a page is not a PNG."""
    try:
        with Image.open(path, formats=list(IMAGE_FORMATS)) as image:
            fmt, size = image.format or "", image.size
            image.load()  # decompression bombs raise here (Image.MAX_IMAGE_PIXELS)
    except (UnidentifiedImageError, OSError, ValueError, KeyError, SyntaxError, Image.DecompressionBombError):
        return None
    if fmt not in IMAGE_FORMATS:
        return None
    content_type, extension = IMAGE_FORMATS[fmt]
    return Sniffed(content_type, extension, *size, verified=True)


def sniff_media(head: bytes) -> Sniffed | None:
    """Video or audio by the container's magic bytes at the start of the file (its first 4 KiB)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return Sniffed("audio/wav", ".wav", verified=True)
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return Sniffed("video/x-msvideo", ".avi", verified=True)
    if head[4:8] == b"ftyp" and head[8:12] in _MP4_BRANDS:
        return Sniffed(*_MP4_BRANDS[head[8:12]], verified=True)
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: WebM, or Matroska which browsers may not play
        is_webm = b"\x42\x82\x84webm" in head[:64]
        return Sniffed(*(("video/webm", ".webm") if is_webm else ("video/x-matroska", ".mkv")), verified=True)
    if head[:4] == b"OggS":
        is_video = b"\x80theora" in head[:512]
        return Sniffed(*(("video/ogg", ".ogv") if is_video else ("audio/ogg", ".ogg")), verified=True)
    if head[:4] == b"fLaC":
        return Sniffed("audio/flac", ".flac", verified=True)
    if head[:3] == b"ID3" or _is_mpeg_audio_frame(head[:4]):
        return Sniffed("audio/mpeg", ".mp3", verified=True)
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:  # ADTS sync word, layer 0
        return Sniffed("audio/aac", ".aac", verified=True)
    return None


def _is_mpeg_audio_frame(header: bytes) -> bool:
    """An MPEG-1/2 layer I–III frame header: sync bits, a real layer, a valid bitrate and sample rate."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return False
    version, layer = (header[1] >> 3) & 0b11, (header[1] >> 1) & 0b11
    bitrate, sample_rate = header[2] >> 4, (header[2] >> 2) & 0b11
    return version != 0b01 and layer != 0 and bitrate not in (0, 0b1111) and sample_rate != 0b11


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the 4 KiB boundary is still text.
        return exc.start >= len(head) - 3
    return True
