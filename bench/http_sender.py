"""Provider HTTP senders side by side: aiohttp (production) against httpx over httpx-aiohttp (a script).

    python bench/http_sender.py [--rounds 5] [--n 4000] [--latency-ms 0] [--sync-n 5000] [--sync-rounds 3]

Each round runs every sender in turn (the order rotates from round to round, so drift on a shared
machine falls on all of them alike) against the fake provider in its own process over loopback:

- send:  N GETs of one ComfyDeploy run (`GET /api/run/{id}`) through `sender.send` alone, 64 at a time;
- fetch: `ComfyDeployClient.fetch_many` of N runs (the sweep's per-run path: send, JSON, pydantic).

For each it prints wall µs per request, requests per second and this process's CPU µs per request
(`resource.getrusage`: user + system of the sender's process, a figure the other tenants of the machine
disturb far less than wall time), then the medians over the rounds and the ratios to aiohttp. With
`--sync-n`, it then runs `bench/sync_throughput.py --sender <name>` for each sender in turn
(`--sync-rounds` times, per-run kind comfydeploy, plus one round of `--sync-list-kind`) and prints its
engine runs/s and the sequential ratio. DATABASE_URL as for sync_throughput.py.

The senders:
- aiohttp:       `providers.clients.transport.AiohttpSender` (one session, prebuilt headers, body capped).
- httpx-trimmed: `httpx.AsyncClient` over `httpx_aiohttp.AiohttpTransport`, reused for the client's life,
                 headers built once, requests built from strings (no `build_request` merging) and sent with
                 `client.send(request, stream=True)`; the same guard, cap and failure words.
- httpx:         the same client through `client.request(...)`-style `build_request` per call (httpx as
                 usually written).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import httpx  # noqa: E402
from httpx_aiohttp import AiohttpTransport  # noqa: E402

from comfytrack.net import USER_AGENT, LinkLocalGuardResolver, describe_failure, ssl_context  # noqa: E402
from providers.clients.transport import (  # noqa: E402
    CONNECT_TIMEOUT,
    AiohttpSender,
    ProviderResponse,
    TransportFailure,
    read_capped,
    refuse_declared_size,
    refuse_link_local_url,
)


class TrimmedHttpxSender:
    """Option A of the one-sender question: httpx's client and models over aiohttp's connection pool."""

    def __init__(self, *, headers: Mapping[str, str], timeout: float, max_connections: int) -> None:
        self.timeout = timeout

        def session() -> aiohttp.ClientSession:
            connector = aiohttp.TCPConnector(
                limit=max_connections, ssl=ssl_context(), resolver=LinkLocalGuardResolver()
            )
            return aiohttp.ClientSession(connector=connector, trust_env=False)

        self.http = httpx.AsyncClient(
            transport=AiohttpTransport(client=session, trust_env=False),
            timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
            follow_redirects=False,
            trust_env=False,
        )
        self.headers = httpx.Headers({"User-Agent": USER_AGENT, **headers})
        self.extensions = {"timeout": httpx.Timeout(timeout, connect=CONNECT_TIMEOUT).as_dict()}

    def request(self, method: str, url: str, kwargs: dict[str, Any]) -> httpx.Request:
        return httpx.Request(method, url, headers=self.headers, extensions=self.extensions, **kwargs)

    async def send(self, method: str, url: str, what: str, max_bytes: int, **kwargs: Any) -> ProviderResponse:
        refuse_link_local_url(url, what)
        try:
            response = await self.http.send(self.request(method, url, kwargs), stream=True)
        except httpx.TimeoutException:
            raise TransportFailure(f"{what} timed out after {self.timeout:g} s.") from None
        except httpx.HTTPError as exc:
            raise TransportFailure(f"{what} failed: {describe_failure(exc)}.") from None
        try:
            declared = response.headers.get("content-length", "")
            refuse_declared_size(int(declared) if declared.isdigit() else None, max_bytes, what)
            body = await read_capped(response.aiter_bytes(), max_bytes, what)
        except httpx.TimeoutException:
            raise TransportFailure(f"{what} stalled while sending its answer.") from None
        except httpx.HTTPError as exc:
            raise TransportFailure(f"{what} broke off its answer: {describe_failure(exc)}.") from None
        finally:
            await response.aclose()
        return ProviderResponse(response.status_code, response.headers, body, method, url)

    async def close(self) -> None:
        await self.http.aclose()


class PlainHttpxSender(TrimmedHttpxSender):
    """httpx as usually written: the client merges its headers, timeout and URL into each request."""

    def __init__(self, *, headers: Mapping[str, str], timeout: float, max_connections: int) -> None:
        super().__init__(headers=headers, timeout=timeout, max_connections=max_connections)
        self.http.headers.update(self.headers)

    def request(self, method: str, url: str, kwargs: dict[str, Any]) -> httpx.Request:
        return self.http.build_request(method, url, **kwargs)


SENDERS: dict[str, type[Any]] = {
    "aiohttp": AiohttpSender,
    "httpx-trimmed": TrimmedHttpxSender,
    "httpx": PlainHttpxSender,
}


def use_sender(name: str) -> None:
    """Make every provider client of this process send through SENDERS[name] (a bench-only switch)."""
    from providers.clients import base

    setattr(base, "AiohttpSender", SENDERS[name])  # noqa: B010 - the name the clients look up at __aenter__


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def time_sends(name: str, url: str, headers: dict[str, str], n: int, concurrency: int) -> tuple[float, float]:
    sender = SENDERS[name](headers=headers, timeout=15.0, max_connections=concurrency)
    limit = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with limit:
            response = await sender.send("GET", url, "bench GET", 8 * 1024 * 1024)
            assert response.status_code == 200, response.status_code

    try:
        await asyncio.gather(*(one() for _ in range(concurrency)))  # connections open, caches warm
        cpu, started = cpu_now(), time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.perf_counter() - started, cpu_now() - cpu
    finally:
        await sender.close()


async def time_fetch_many(name: str, fake: Any, ids: list[str]) -> tuple[float, float]:
    from providers.clients.base import RunSnapshot
    from providers.clients.comfydeploy import ComfyDeployClient

    use_sender(name)
    client = ComfyDeployClient(fake.base_url("comfydeploy"), fake.secret("comfydeploy"))
    async with client:
        await client.fetch_many(ids[:64])
        cpu, started = cpu_now(), time.perf_counter()
        answers = await client.fetch_many(ids)
        elapsed, spent = time.perf_counter() - started, cpu_now() - cpu
    bad = [a for a in answers.values() if not isinstance(a, RunSnapshot)]
    assert not bad, bad[:3]
    return elapsed, spent


def run_sync_bench(sender: str, kind: str, n: int) -> tuple[float, float | None, str]:
    command = [sys.executable, str(ROOT / "bench" / "sync_throughput.py"), "--kind", kind, "--n", str(n)]
    command += ["--baseline", "200", "--skip-archive", "--sender", sender]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    engine = re.search(r"-> ([\d,]+) runs/s", out)
    ratio = re.search(r"engine / baseline = ([\d.]+)x", out)
    cpu = re.search(r"CPU per run: (.*)", out)
    assert engine, out
    return (
        float(engine.group(1).replace(",", "")),
        float(ratio.group(1)) if ratio else None,
        cpu.group(1) if cpu else "",
    )


def median_line(label: str, values: dict[str, list[float]], unit: str, fmt: str = ",.0f") -> None:
    medians = {name: statistics.median(v) for name, v in values.items()}
    base = medians["aiohttp"]
    cells = [f"{name} {m:{fmt}}{unit} ({m / base:.2f}×)" for name, m in medians.items()]
    print(f"  {label:24} " + "   ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=4000, help="requests per sender per round")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the fake's added latency per request")
    parser.add_argument("--senders", default="aiohttp,httpx-trimmed,httpx")
    parser.add_argument("--sync-n", type=int, default=0, help="also run sync_throughput.py with this many runs")
    parser.add_argument("--sync-rounds", type=int, default=3)
    parser.add_argument("--sync-list-kind", default="comfycloud", help="one list-kind round ('' for none)")
    args = parser.parse_args()
    names = args.senders.split(",")
    assert names[0] == "aiohttp", "ratios are to aiohttp: name it first"

    from bench.harness import RemoteFake, add_finished_runs
    from providers.clients.event_loop import new_event_loop
    from providers.fake import state as S

    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with RemoteFake(args.latency_ms) as fake:
        ids = add_finished_runs(fake, "comfydeploy", args.n, S.SUCCEEDED)
        url = f"{fake.base_url('comfydeploy')}/run/{ids[0]}"
        headers = {"Authorization": f"Bearer {fake.secret('comfydeploy')['token']}"}
        send_us: dict[str, list[float]] = {name: [] for name in names}
        send_cpu: dict[str, list[float]] = {name: [] for name in names}
        fetch_rate: dict[str, list[float]] = {name: [] for name in names}
        fetch_cpu: dict[str, list[float]] = {name: [] for name in names}
        print(
            f"{args.n:,} requests per sender per round, {args.concurrency} at a time, "
            f"fake latency {args.latency_ms:g} ms"
        )
        for round_no in range(args.rounds):
            order = names[round_no % len(names) :] + names[: round_no % len(names)]
            for name in order:
                with asyncio.Runner(loop_factory=new_event_loop) as runner:
                    wall, cpu = runner.run(time_sends(name, url, headers, args.n, args.concurrency))
                    f_wall, f_cpu = runner.run(time_fetch_many(name, fake, ids))
                send_us[name].append(wall / args.n * 1e6)
                send_cpu[name].append(cpu / args.n * 1e6)
                fetch_rate[name].append(args.n / f_wall)
                fetch_cpu[name].append(f_cpu / args.n * 1e6)
                print(
                    f"round {round_no + 1} {name:14} send {wall / args.n * 1e6:6.0f} µs/req wall, "
                    f"{cpu / args.n * 1e6:5.0f} µs CPU/req ({args.n / wall:,.0f} req/s); "
                    f"fetch_many {args.n / f_wall:,.0f} runs/s, {f_cpu / args.n * 1e6:5.0f} µs CPU/run"
                )
        print(f"medians over {args.rounds} rounds (× = against aiohttp):")
        median_line("send, wall per request", send_us, " µs")
        median_line("send, CPU per request", send_cpu, " µs")
        median_line("fetch_many, runs/s", fetch_rate, "")
        median_line("fetch_many, CPU per run", fetch_cpu, " µs")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    if args.sync_n:
        kinds = ["comfydeploy"] * args.sync_rounds + ([args.sync_list_kind] if args.sync_list_kind else [])
        rates: dict[tuple[str, str], list[float]] = {}
        for round_no, kind in enumerate(kinds):
            order = names[round_no % len(names) :] + names[: round_no % len(names)]
            for name in order:
                rate, ratio, cpu_text = run_sync_bench(name, kind, args.sync_n)
                rates.setdefault((kind, name), []).append(rate)
                shown = f" ({ratio:.1f}× sequential)" if ratio is not None else ""
                load = os.getloadavg()[0]
                print(
                    f"sync_throughput {kind:12} {name:14} {rate:7,.0f} runs/s{shown}; CPU per run {cpu_text}; "
                    f"load {load:.1f}"
                )
        for (kind, name), values in rates.items():
            print(f"  median {kind:12} {name:14} {statistics.median(values):7,.0f} runs/s over {len(values)}")


if __name__ == "__main__":
    main()
