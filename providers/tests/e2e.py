"""Helpers for the end-to-end tests: real loopback HTTP against the fake provider server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import aiohttp
import pytest

from providers.clients.base import ClientOptions, OutputRef, ProviderClient, ProviderError, RunStatus
from providers.fake import state as S

FAULTS = ["5xx", "429", "malformed", "truncated", "html", "stall", "huge"]


async def fetch(url: str, headers: Mapping[str, str] | None = None) -> tuple[int, str | None, bytes]:
    """One GET, redirects not followed: (status, Location, body)."""
    async with (
        aiohttp.ClientSession(trust_env=False) as http,
        http.get(url, headers=headers, allow_redirects=False) as response,
    ):
        return response.status, response.headers.get("location"), await response.read()


def fetch_now(url: str, headers: Mapping[str, str] | None = None) -> tuple[int, str | None, bytes]:
    return asyncio.run(fetch(url, headers))


async def download(client: ProviderClient, output: OutputRef) -> bytes:
    request = client.download_request(output)
    status, _, body = await fetch(request.url, request.headers)
    assert status == 200, body[:200]
    return body


def forced(fake, kind: str, external_id: str, *phases: str) -> None:
    """Move a run along without sleeping: each phase entered a millisecond after the previous one."""
    run = fake.state.get(kind, external_id)
    start = time.time() - len(phases) * 0.001
    for index, phase in enumerate(phases):
        run.force(phase, at=start + index * 0.001)


def assert_fault_is_a_provider_error(fake, cls: type[ProviderClient], external_id: str, mode: str) -> None:
    fake.set_faults(mode=mode, remaining=1, stall_seconds=2, only_kind=cls.kind)
    client = cls(fake.base_url(cls.kind), fake.secret(cls.kind), options=ClientOptions(timeout=0.5))
    with pytest.raises(ProviderError) as caught:
        client.call(client.fetch, external_id)
    assert caught.value.message and not caught.value.auth_failed
    if mode == "429":
        assert caught.value.retry_after == 2
    # The fault is spent: the next poll works.
    assert client.call(client.fetch, external_id).status is not RunStatus.UNKNOWN


def assert_stale_answers_the_earlier_status(
    fake, cls: type[ProviderClient], external_id: str, earlier: RunStatus = RunStatus.RUNNING
) -> None:
    forced(fake, cls.kind, external_id, S.RUNNING, S.SUCCEEDED)
    client = cls(fake.base_url(cls.kind), fake.secret(cls.kind))
    fake.set_faults(mode="stale", only_kind=cls.kind)
    assert client.call(client.fetch, external_id).status is earlier
    fake.set_faults()
    assert client.call(client.fetch, external_id).status is RunStatus.SUCCEEDED
