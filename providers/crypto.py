"""Credential secrets encrypted at rest with MultiFernet (keys from COMFYTRACK_ENCRYPTION_KEYS).

The first key encrypts; every key decrypts, so a new key can be put first and
`manage.py rotate_encryption_keys` re-encrypts every secret under it before the old one is dropped.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with the configured keys (a key was removed too early)."""


@lru_cache(maxsize=4)
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def multifernet() -> MultiFernet:
    return _multifernet(tuple(settings.ENCRYPTION_KEYS))


def encrypt_json(data: dict[str, Any]) -> str:
    return multifernet().encrypt(json.dumps(data, separators=(",", ":")).encode()).decode()


def decrypt_json(token: str) -> dict[str, Any]:
    try:
        return json.loads(multifernet().decrypt(token.encode()))
    except (InvalidToken, ValueError):
        raise SecretUnreadable(
            "The stored secret cannot be decrypted with the configured COMFYTRACK_ENCRYPTION_KEYS "
            "(was the key that encrypted it removed?). Enter the secret again."
        ) from None


class UnreadableSecret(dict):
    """Stands in for a secret that could not be decrypted: empty to readers, and saved back
    unchanged, so a missing key never destroys the stored ciphertext."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token


if TYPE_CHECKING:  # for django-stubs: model instances hold a dict, not the text the column stores
    _TextField = models.TextField[dict[str, Any], dict[str, Any]]
else:
    _TextField = models.TextField


class EncryptedJSONField(_TextField):
    """A dict stored as a Fernet token. The plaintext never reaches the database."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("editable", False)
        kwargs.setdefault("default", dict)
        super().__init__(*args, **kwargs)

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> dict[str, Any]:
        if not value:
            return {}
        try:
            return decrypt_json(value)
        except SecretUnreadable:
            return UnreadableSecret(value)

    def to_python(self, value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else (self.from_db_value(value, None, None) if value else {})

    def get_prep_value(self, value: Any) -> str:
        if isinstance(value, UnreadableSecret):
            return value.token
        if not isinstance(value, dict):
            raise TypeError("EncryptedJSONField holds a dict")
        return encrypt_json(value)

    def value_to_string(self, obj: Any) -> str:
        # Serialisation (dumpdata) writes the ciphertext, never the plaintext.
        return self.get_prep_value(self.value_from_object(obj))
