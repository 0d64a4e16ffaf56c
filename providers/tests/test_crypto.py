from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from providers.crypto import SecretUnreadable, UnreadableSecret
from providers.models import Credential

SECRET = "cd-secret-token-1234"


def raw_secret_column(credential: Credential) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM providers_credential WHERE id = %s", [credential.pk])
        return cursor.fetchone()[0]


def test_it_stores_the_secret_encrypted_at_rest(provider):
    credential = provider.credentials.get()
    raw = raw_secret_column(credential)
    assert SECRET not in raw
    assert "token" not in raw
    assert Credential.objects.get(pk=credential.pk).plain_secret() == {"token": SECRET}


def test_it_shows_only_a_masked_hint(provider):
    credential = provider.credentials.get()
    assert credential.hint == "…1234"
    assert SECRET not in str(credential) and SECRET not in repr(credential.conf)


def test_rotation_reencrypts_everything_under_the_first_key(provider, settings):
    credential = provider.credentials.get()
    old_keys = list(settings.ENCRYPTION_KEYS)
    new_key = Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [new_key, *old_keys]
    call_command("rotate_encryption_keys")
    # Only the new key is needed from now on.
    settings.ENCRYPTION_KEYS = [new_key]
    assert Credential.objects.get(pk=credential.pk).plain_secret() == {"token": SECRET}
    assert Fernet(new_key).decrypt(raw_secret_column(credential).encode())


def test_a_missing_key_makes_the_secret_unreadable_but_never_destroys_it(provider, settings):
    credential = provider.credentials.get()
    before = raw_secret_column(credential)
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    loaded = Credential.objects.get(pk=credential.pk)
    assert isinstance(loaded.secret, UnreadableSecret)
    assert loaded.hint.startswith("(unreadable")
    with pytest.raises(SecretUnreadable):
        loaded.plain_secret()
    loaded.name = "renamed"
    loaded.save()
    assert raw_secret_column(credential) == before


def test_rotation_refuses_and_changes_nothing_when_a_secret_is_unreadable(provider, settings):
    credential = provider.credentials.get()
    before = raw_secret_column(credential)
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError, match="cannot be decrypted"):
        call_command("rotate_encryption_keys")
    assert raw_secret_column(credential) == before
