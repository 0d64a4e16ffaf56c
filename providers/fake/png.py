"""Real PNG bytes for fake outputs (a solid colour derived from a seed, so each output differs)."""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache

from PIL import Image


@lru_cache(maxsize=1024)
def png_bytes(seed: str, width: int = 64, height: int = 64) -> bytes:
    digest = hashlib.sha256(seed.encode()).digest()
    image = Image.new("RGB", (width, height), tuple(digest[:3]))
    # A second colour band so thumbnails are visibly an image, not a flat swatch.
    image.paste(tuple(digest[3:6]), (0, height // 2, width, height))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
