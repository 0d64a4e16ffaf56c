"""The client's IP address, for login lockouts and the API's bad-key limit.

Behind a reverse proxy every request comes from the proxy's address; with
COMFYTRACK_TRUSTED_PROXY_COUNT=N (the number of proxies in front of the app, each appending to
X-Forwarded-For) the client is the address the outermost trusted proxy saw. Without it the header is
ignored: a client could otherwise pick any address and dodge the limits.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    proxies = int(getattr(settings, "COMFYTRACK_TRUSTED_PROXY_COUNT", 0) or 0)
    if proxies > 0:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR", "")
