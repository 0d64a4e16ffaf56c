"""Encryption keys: validation, and a kept development key so `make run` just works."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured


def validate_encryption_keys(keys: list[str]) -> None:
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            # Never echo the key itself: it is a secret even when malformed.
            raise ImproperlyConfigured(
                f"COMFYTRACK_ENCRYPTION_KEYS: key {position} of {len(keys)} is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes)."
            ) from None


def development_encryption_key(data_dir: Path) -> str:
    """A key generated once and kept in the data directory (development only, DEBUG on)."""
    path = data_dir / "development-encryption.key"
    if path.exists():
        key = path.read_text().strip()
        validate_encryption_keys([key])
        return key
    data_dir.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key
