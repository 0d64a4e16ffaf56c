"""Presigned object-store links (AWS ESD, SpeedPix outputs): the file name in the path, the expiry in the query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, unquote, urlsplit

from providers.clients.base import parse_timestamp


def filename_from_url(url: str, default: str = "output") -> str:
    """The last path segment, unquoted: presigned S3/OSS URLs keep the object name there."""
    path = urlsplit(url).path
    name = unquote(path.rstrip("/").rsplit("/", 1)[-1]) if path else ""
    return name or default


def presigned_expiry(url: str, fetched: datetime | None = None, default_ttl: float | None = None) -> datetime | None:
    """When a presigned URL stops working, read from its own query string where possible.

    - S3 SigV4: `X-Amz-Date` (YYYYMMDD'T'HHMMSS'Z') + `X-Amz-Expires` seconds.
    - S3 SigV2 / Aliyun OSS: `Expires` = Unix seconds (also the fake server's lower-case `expires`).
    Otherwise `fetched + default_ttl` when the provider documents a TTL, else None.
    """
    query = {key.lower(): value for key, value in parse_qsl(urlsplit(url).query)}
    amz_date, amz_expires = query.get("x-amz-date"), query.get("x-amz-expires")
    if amz_date and amz_expires and amz_expires.isdigit():
        try:
            signed = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            signed = None
        if signed is not None:
            return signed + timedelta(seconds=int(amz_expires))
    expires = parse_timestamp(query.get("expires")) if query.get("expires", "").isdigit() else None
    if expires is not None:
        return expires
    if default_ttl is None:
        return None
    return (fetched or datetime.now(UTC)) + timedelta(seconds=default_ttl)
