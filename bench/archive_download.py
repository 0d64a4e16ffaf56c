"""Output downloads side by side: comfytrack.safe_http as it is against the same module at an older commit (a script).

    python bench/archive_download.py [--old-rev 5db98c2] [--n 2000] [--size 65536] [--rounds 5] [--concurrency 8]

The older module is read with `git show <rev>:<its path>` and loaded beside the current one, so both
run in one process, in turn (the order rotates from round to round, so drift on a shared machine falls on
both alike), against one aiohttp file server in its own process over loopback. Each round downloads N
files of --size bytes, --concurrency at a time, through one `SafeDownloader` (guard, streaming to a temp
file, sha256), as the archive does for one provider. Prints outputs/s and this process's CPU per download
(`resource.getrusage`: user + system, the figure the other tenants of the machine disturb least), then
the medians and the ratio of the current code to the older one.

At `5db98c2` the module (then runs/safe_http.py) sent through httpx.AsyncClient over httpx-aiohttp's transport (both in
requirements-dev.txt for this comparison).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import module_at  # noqa: E402
from comfytrack import safe_http  # noqa: E402

SERVER = """
import sys
from aiohttp import web
body = bytes(range(256)) * (int(sys.argv[2]) // 256)
async def answer(request):
    return web.Response(body=body, content_type="image/png")
app = web.Application()
app.router.add_get("/files/{name}", answer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


# Where the module is at a revision: comfytrack/ from the move on, runs/ before it.
MODULE_PATHS = ("comfytrack/safe_http.py", "runs/safe_http.py")


def older_module(rev: str) -> ModuleType:
    return module_at(rev, MODULE_PATHS, f"safe_http_{rev}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_round(module: ModuleType, root: str, n: int, concurrency: int, temp_dir: str) -> tuple[float, float]:
    guard = module.HostGuard.for_base_url(root, purpose="fetch from", setting="BENCH")
    # The older downloader takes an httpx.Request, the current one a URL and headers.
    takes_request = "request" in inspect.signature(module.SafeDownloader.download).parameters
    limit = asyncio.Semaphore(concurrency)

    async def one(downloader: Any, index: int) -> None:
        url = f"{root}/files/{index}.png?sig=x"
        async with limit:
            if takes_request:
                import httpx

                result = await downloader.download(httpx.Request("GET", url))
            else:
                result = await downloader.download(url, {})
        os.unlink(result.path)

    started_cpu, started = cpu_seconds(), time.perf_counter()
    async with module.SafeDownloader(
        guard, max_bytes=10**9, deadline=60, max_connections=concurrency, temp_dir=temp_dir
    ) as downloader:
        await asyncio.gather(*(one(downloader, i) for i in range(n)))
    wall, cpu = time.perf_counter() - started, cpu_seconds() - started_cpu
    return n / wall, cpu / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old-rev", default="5db98c2")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=65536)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    versions = {f"older ({args.old_rev})": older_module(args.old_rev), "current": safe_http}
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(args.size)])
    root = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in versions}
        names = list(versions)
        with tempfile.TemporaryDirectory() as temp_dir:
            asyncio.run(one_round(safe_http, root, 200, args.concurrency, temp_dir))  # warm-up
            for round_ in range(args.rounds):
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for name in order:
                    rate, cpu = asyncio.run(one_round(versions[name], root, args.n, args.concurrency, temp_dir))
                    results[name].append((rate, cpu))
                    print(f"round {round_ + 1} {name:>18}: {rate:8,.0f} downloads/s  {cpu:7,.0f} µs CPU per download")
    finally:
        server.terminate()
        server.wait(10)
    print(f"\nmedians over {args.rounds} rounds, {args.n:,} downloads of {args.size:,} bytes, ", end="")
    print(f"{args.concurrency} at a time:")
    medians = {
        name: (statistics.median(r for r, _ in rows), statistics.median(c for _, c in rows))
        for name, rows in results.items()
    }
    old_rate, old_cpu = medians[names[0]]
    for name, (rate, cpu) in medians.items():
        print(
            f"  {name:>18}: {rate:8,.0f} downloads/s ({rate / old_rate:.2f}×)  "
            f"{cpu:7,.0f} µs CPU per download ({cpu / old_cpu:.2f}×)"
        )


if __name__ == "__main__":
    main()
