"""Guessing is throttled: sign-ins (the login page and the admin's, django-axes) lock a username + address
after a few failures; wrong API keys from one address get 429 with Retry-After."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from accounts.models import ApiKey

pytestmark = pytest.mark.django_db

LOGIN_PAGES = ["/login/", "/admin/login/"]


@pytest.fixture(autouse=True)
def fresh_counters(settings):
    settings.AXES_FAILURE_LIMIT = 3
    cache.clear()
    yield
    cache.clear()


def sign_in(client: Client, page: str, password: str, username: str = "alice", ip: str = "203.0.113.7"):
    return client.post(page, {"username": username, "password": password}, REMOTE_ADDR=ip)


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_the_right_password_after_too_many_wrong_ones_is_refused_for_a_while(client, alice, page, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert sign_in(client, page, "wrong").status_code == 200  # the form again, with its error
    assert sign_in(client, page, "wrong").status_code == 429  # the last failure allowed locks
    locked = sign_in(client, page, "password")
    assert locked.status_code == 429
    text = locked.content.decode()
    assert "Too many sign-in attempts" in text and "alice" in text and "0:15:00" in text
    assert "_auth_user_id" not in client.session
    # Another address is not locked out, nor is another username from this one.
    assert sign_in(Client(), page, "password", ip="198.51.100.9").status_code == 302
    assert sign_in(Client(), page, "wrong", username="bob").status_code == 200


def test_a_successful_sign_in_resets_the_count(client, alice, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(client, "/login/", "wrong")
    assert sign_in(client, "/login/", "password").status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(client, "/login/", "wrong")
    assert sign_in(client, "/login/", "password").status_code == 302


def test_the_lockout_ends_after_the_cool_off(client, alice, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "/login/", "wrong")
    assert sign_in(client, "/login/", "password").status_code == 429
    with time_machine.travel(timezone.now() + settings.AXES_COOLOFF_TIME + timedelta(seconds=5)):
        assert sign_in(client, "/login/", "password").status_code == 302


def api_get(client: Client, key: str, ip: str = "203.0.113.7"):
    return client.get("/api/v1/runs", HTTP_X_API_KEY=key, REMOTE_ADDR=ip)


def test_wrong_api_keys_from_one_address_are_rate_limited(client, org, settings):
    settings.COMFYTRACK_API_BAD_KEY_RATE = "3/min"
    good = ApiKey.issue(org, "ci")[1]
    for i in range(3):
        assert api_get(client, f"ct_wrong{i:032d}").status_code == 401
    limited = api_get(client, "ct_wrong" + "9" * 32)
    assert limited.status_code == 429
    assert limited.json()["code"] == "throttled" and "wrong API key" in limited.json()["detail"]
    assert 1 <= int(limited["Retry-After"]) <= 61
    # Limited before the lookup: even a good key from that address waits; other addresses are unaffected.
    assert api_get(client, good).status_code == 429
    assert api_get(client, good, ip="198.51.100.9").status_code == 200
    bearer = client.get("/api/v1/runs", HTTP_AUTHORIZATION="Bearer ct_wrong", REMOTE_ADDR="203.0.113.7")
    assert bearer.status_code == 429


def test_the_client_address_comes_from_trusted_proxies_only(client, org, settings):
    settings.COMFYTRACK_API_BAD_KEY_RATE = "1/min"
    forged = {"HTTP_X_FORWARDED_FOR": "192.0.2.1"}
    assert client.get("/api/v1/runs", HTTP_X_API_KEY="ct_wrong", REMOTE_ADDR="10.0.0.2", **forged).status_code == 401
    # Without a trusted proxy the header is ignored: a new forged address does not escape the limit.
    forged = {"HTTP_X_FORWARDED_FOR": "192.0.2.2"}
    assert client.get("/api/v1/runs", HTTP_X_API_KEY="ct_wrong", REMOTE_ADDR="10.0.0.2", **forged).status_code == 429
    settings.COMFYTRACK_TRUSTED_PROXY_COUNT = 1
    behind = {"HTTP_X_FORWARDED_FOR": "192.0.2.3, 192.0.2.4"}
    assert client.get("/api/v1/runs", HTTP_X_API_KEY="ct_wrong", REMOTE_ADDR="10.0.0.2", **behind).status_code == 401
