"""Who is calling the JSON API.

Three ways in, tried in order: an organization API key in `X-API-Key`, the same key as
`Authorization: Bearer`, or a signed-in browser session (CSRF checked on writes). Each returns a
`Caller`, so handlers read `request.auth.organization` whatever the way in was.

A read-only key (or a viewer's session) on a write is refused here with a 403, once for every
operation, instead of in each handler.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from ninja.errors import AuthorizationError, HttpError, Throttled
from ninja.security import APIKeyCookie, APIKeyHeader, HttpBearer
from ninja.throttling import BaseThrottle, SimpleRateThrottle
from ninja.utils import check_csrf

from accounts.access import current_access
from accounts.client_ip import client_ip
from accounts.models import ApiKey, Organization

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READ_ONLY_MESSAGE = "This API key is read-only; use a key with write access for this request."
# A signed-in viewer using the API from the browser: it is their role that is refused, not a key.
VIEWER_MESSAGE = (
    "You are signed in as a viewer of this organization: viewers can read but not change anything. "
    "Ask an owner or admin for the member role, or use an API key with write access."
)
# Wrong API keys one client address may send per window before its key requests get 429 (guessing keys,
# or a misconfigured script hammering with a revoked one).
DEFAULT_BAD_KEY_RATE = "20/min"


@dataclass(frozen=True)
class Caller:
    """Who is calling: an API key, or a signed-in user with the dashboard's current organization.

    Handlers scope by `organization_id`, which a key has without loading its organization row (one
    query, and a join, fewer on every API request); `organization` loads it on first use."""

    read_only: bool
    api_key: ApiKey | None = None
    user: object | None = None
    session_organization: Organization | None = None

    @property
    def organization_id(self) -> int:
        return self.api_key.organization_id if self.api_key is not None else self.organization.pk

    @property
    def organization(self) -> Organization:
        organization = self.api_key.organization if self.api_key is not None else self.session_organization
        assert organization is not None, "a Caller has an API key or the session's organization"
        return organization

    @property
    def ident(self) -> str:
        """What the rate limit counts against: the key, or the signed-in user."""
        # Codes, not integer ids: SQLite reuses ids after a rollback, so tests would share counters.
        if self.api_key is not None:
            return f"key:{self.api_key.code}"
        return f"user:{getattr(self.user, 'pk', '')}:{self.organization.code}"

    def __str__(self) -> str:
        return self.ident


def caller(request: HttpRequest) -> Caller:
    """Who is calling, as the API's authentication put it on the request (`request.auth`)."""
    auth = getattr(request, "auth", None)
    if not isinstance(auth, Caller):
        raise TypeError("caller() is for requests that passed the API's authentication")
    return auth


def _refuse_read_only_writes(request: HttpRequest, caller: Caller) -> Caller:
    if caller.read_only and request.method not in SAFE_METHODS:
        raise AuthorizationError(403, READ_ONLY_MESSAGE if caller.api_key is not None else VIEWER_MESSAGE)
    return caller


class BadKeysThrottled(Throttled):
    """Too many wrong API keys from one client address: refused before the key is even looked up."""

    def __init__(self, wait: float) -> None:
        super().__init__(wait=int(wait) + 1)
        self.message = "Too many requests with a wrong API key from your address; wait before trying again."


def caller_for_key(request: HttpRequest, plain: str | None) -> Caller | None:
    plain = (plain or "").strip()
    if not plain:
        return None
    bad_keys = FixedWindow("api-bad-keys", getattr(settings, "COMFYTRACK_API_BAD_KEY_RATE", DEFAULT_BAD_KEY_RATE))
    ident = client_ip(request)
    if bad_keys.used(ident) >= bad_keys.limit:
        raise BadKeysThrottled(bad_keys.wait())
    key = ApiKey.objects.authenticate(plain)
    if key is None:
        bad_keys.hit(ident)
        return None
    key.touch()
    return _refuse_read_only_writes(request, Caller(key.read_only, api_key=key))


class ApiKeyAuth(APIKeyHeader):
    """`X-API-Key: ct_…`"""

    param_name = "X-API-Key"

    def authenticate(self, request: HttpRequest, key: str | None) -> Caller | None:
        return caller_for_key(request, key)


class BearerAuth(HttpBearer):
    """`Authorization: Bearer ct_…`"""

    def authenticate(self, request: HttpRequest, token: str) -> Caller | None:
        return caller_for_key(request, token)


class SessionOrgAuth(APIKeyCookie):
    """A signed-in dashboard user. CSRF is checked only once we know there is a session user, so a
    request with a bad key and no session still gets the 401 it deserves rather than a CSRF 403."""

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request: HttpRequest) -> str | None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        if check_csrf(request):
            raise HttpError(403, "CSRF check failed: send the X-CSRFToken header with the csrftoken cookie's value.")
        return request.COOKIES.get(self.param_name)

    def authenticate(self, request: HttpRequest, key: str | None) -> Caller | None:
        if key is None:
            return None
        # The dashboard's current organization (`request.session["org"]`, else the first one).
        access = current_access(request)
        if access is None:
            return None
        caller = Caller(not access.can_write, user=request.user, session_organization=access.organization)
        return _refuse_read_only_writes(request, caller)


class FixedWindow:
    """A count per identity in fixed windows of a rate like "600/min", in the Django cache: one atomic
    `cache.incr` per hit (O(1)); per process with the local-memory cache, shared with Redis or Memcached."""

    _PERIODS = SimpleRateThrottle._PERIODS

    def __init__(self, name: str, rate: str) -> None:
        count, _, period = rate.partition("/")
        digits = "".join(c for c in period if c.isdigit())
        unit = period[len(digits) :] or "s"
        self.name, self.limit, self.duration = name, int(count), int(digits or 1) * self._PERIODS[unit]

    def _key(self, ident: str) -> str:
        return f"{self.name}:{ident}:{self.duration}:{int(time.time() // self.duration)}"

    def used(self, ident: str) -> int:
        return cache.get(self._key(ident), 0)

    def hit(self, ident: str) -> int:
        """Count one more in the current window; returns the count so far."""
        key = self._key(ident)
        cache.add(key, 0, timeout=self.duration + 1)
        try:
            return cache.incr(key)
        except ValueError:  # evicted between add and incr
            cache.set(key, 1, timeout=self.duration + 1)
            return 1

    def wait(self) -> float:
        """Seconds to the end of the current window (what Retry-After says)."""
        return max(self.duration - time.time() % self.duration, 1.0)


class KeyRateThrottle(BaseThrottle):
    """Requests per API key (or session user) in fixed windows, rate from `settings.COMFYTRACK_API_RATE`
    ("600/min"; read on every request, so operators and tests can change it without a rebuild).
    A soft guard against runaway scripts, not a security control."""

    def window(self) -> FixedWindow:
        return FixedWindow("api-rate", getattr(settings, "COMFYTRACK_API_RATE", "600/min") or "600/min")

    def allow_request(self, request: HttpRequest) -> bool:
        caller = getattr(request, "auth", None)
        if not isinstance(caller, Caller):
            return True  # unauthenticated routes (inbound provider webhooks) are not per-key
        window = self.window()
        return window.hit(caller.ident) <= window.limit

    def wait(self) -> float:
        # Never None: a throttled answer always carries Retry-After, the end of the current window.
        # Derived, not stored: one throttle object serves every request thread.
        return self.window().wait()


API_AUTH = [ApiKeyAuth(), BearerAuth(), SessionOrgAuth()]
