"""A secret shown once, on the page a form redirects to (POST-redirect-GET, so a reload posts nothing).

The secret rides in the session encrypted, never in plaintext (sessions are stored in the database),
and is removed from it by the first page that shows it.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from providers.crypto import SecretUnreadable, decrypt_json, encrypt_json


def keep_for_next_page(request: HttpRequest, slot: str, data: dict[str, Any]) -> None:
    request.session[slot] = encrypt_json(data)


def take(request: HttpRequest, slot: str, **expected: str) -> dict[str, Any] | None:
    """What `keep_for_next_page` put in `slot`, removed from the session; None if there is nothing, if it
    cannot be decrypted, or if it is not for this page (`expected` items differ: it stays for its page)."""
    sealed = request.session.get(slot)
    if not sealed:
        return None
    try:
        data = decrypt_json(sealed)
    except SecretUnreadable:
        del request.session[slot]
        return None
    if any(data.get(key) != value for key, value in expected.items()):
        return None
    del request.session[slot]
    return data
