"""Expiring, signed file URLs like S3/GCS presigned links, serving real PNG bytes.

Provider modules call `file_url(request, kind, external_id, filename, ttl)` to hand out an output URL.
The bytes are `png_bytes(output_seed(...))`, so tests can compute what an archived file must equal.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from aiohttp import web

from providers.fake.png import png_bytes

_SIGNING_KEY = b"fake-presign-key"


def output_seed(kind: str, external_id: str, filename: str) -> str:
    return f"{kind}/{external_id}/{filename}"


def _signature(path: str, expires: int) -> str:
    return hmac.new(_SIGNING_KEY, f"{path}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]


def file_url(
    request: web.Request, kind: str, external_id: str, filename: str, ttl: int = 3600, *, keyless: bool = False
) -> str:
    """A signed link to an output. `keyless` links refuse a request that also carries a credential
    header, as Google Cloud Storage's signed URLs do (400): Comfy Cloud's /api/view redirects to those."""
    expires = int(time.time()) + ttl
    path = f"/files/{kind}/{external_id}/{filename}"
    strict = "&keyless=1" if keyless else ""
    return f"{request.url.origin()}{path}?expires={expires}&sig={_signature(path, expires)}{strict}"


def url_expiry(url: str) -> int | None:
    """The expiry a fake file URL carries (what a provider would state alongside it)."""
    from urllib.parse import parse_qs, urlsplit

    values = parse_qs(urlsplit(url).query).get("expires")
    return int(values[0]) if values else None


async def serve_file(request: web.Request) -> web.Response:
    try:
        expires = int(request.query.get("expires", ""))
    except ValueError:
        return web.Response(status=403, text="missing expiry")
    if not hmac.compare_digest(request.query.get("sig", ""), _signature(request.path, expires)):
        return web.Response(status=403, text="<Error><Code>SignatureDoesNotMatch</Code></Error>")
    if request.query.get("keyless") and ("X-API-Key" in request.headers or "Authorization" in request.headers):
        return web.Response(
            status=400,
            text="<Error><Code>InvalidArgument</Code><Message>A signed URL request must not carry other "
            "credentials.</Message></Error>",
        )
    if expires < time.time():
        return web.Response(
            status=403, text="<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
        )
    kind, external_id, filename = (request.match_info[k] for k in ("kind", "external_id", "filename"))
    return web.Response(body=png_bytes(output_seed(kind, external_id, filename)), content_type="image/png")


def setup(app: web.Application, state: object) -> None:
    app.router.add_get("/files/{kind}/{external_id}/{filename}", serve_file)
