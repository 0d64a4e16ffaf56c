"""Who is calling the JSON API (STYLE.md rule 20).

Three ways in, tried in order: an organization API key in `X-API-Key`, the same key as
`Authorization: Bearer`, or a signed-in browser session (CSRF checked on writes). Each returns a
`Caller`, so handlers read `request.auth.organization` whatever the way in was.

A read-only key (or a viewer's session) on a write is refused here with a 403, once for every
operation, instead of in each handler.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest
from ninja.errors import AuthorizationError, HttpError
from ninja.security import APIKeyCookie, APIKeyHeader, HttpBearer
from ninja.throttling import SimpleRateThrottle
from ninja.utils import check_csrf

from accounts.access import current_access
from accounts.models import ApiKey, Organization

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READ_ONLY_MESSAGE = "This API key is read-only; use a key with write access for this request."


@dataclass(frozen=True)
class Caller:
    organization: Organization
    read_only: bool
    api_key: ApiKey | None = None
    user: object | None = None

    @property
    def ident(self) -> str:
        """What the rate limit counts against: the key, or the signed-in user."""
        # Codes, not integer ids: SQLite reuses ids after a rollback, so tests would share counters.
        if self.api_key is not None:
            return f"key:{self.api_key.code}"
        return f"user:{getattr(self.user, 'pk', '')}:{self.organization.code}"

    def __str__(self) -> str:
        return self.ident


def _refuse_read_only_writes(request: HttpRequest, caller: Caller) -> Caller:
    if caller.read_only and request.method not in SAFE_METHODS:
        raise AuthorizationError(403, READ_ONLY_MESSAGE)
    return caller


def caller_for_key(request: HttpRequest, plain: str | None) -> Caller | None:
    key = ApiKey.objects.authenticate((plain or "").strip())
    if key is None:
        return None
    key.touch()
    return _refuse_read_only_writes(request, Caller(key.organization, key.read_only, api_key=key))


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
        caller = Caller(access.organization, not access.can_write, user=request.user)
        return _refuse_read_only_writes(request, caller)


class KeyRateThrottle(SimpleRateThrottle):
    """Requests per API key (or session user), rate from `settings.COMFYTRACK_API_RATE` ("600/min").

    Read on every request so tests and operators can change it without rebuilding the API. Backed by
    the Django cache: a soft guard against runaway scripts, not a security control (PLATFORM.md §4)."""

    scope = "api-key"

    def __init__(self) -> None:
        super().__init__(rate=self._configured())

    @staticmethod
    def _configured() -> str:
        return getattr(settings, "COMFYTRACK_API_RATE", "600/min") or "600/min"

    def get_cache_key(self, request: HttpRequest) -> str | None:
        caller = getattr(request, "auth", None)
        if not isinstance(caller, Caller):
            return None  # unauthenticated routes (inbound provider webhooks) are not per-key
        return self.cache_format % {"scope": self.scope, "ident": caller.ident}

    def allow_request(self, request: HttpRequest) -> bool:
        rate = self._configured()
        if rate != self.rate:
            self.rate = rate
            self.num_requests, self.duration = self.parse_rate(rate)
        return super().allow_request(request)

    def wait(self) -> float:
        # Never None: a throttled answer always carries Retry-After.
        if not self.history:
            return float(self.duration or 1)
        return max(self.duration - (self.now - self.history[-1]), 1.0)


API_AUTH = [ApiKeyAuth(), BearerAuth(), SessionOrgAuth()]
