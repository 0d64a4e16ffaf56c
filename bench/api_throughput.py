"""JSON API throughput (a script, not a test): GET /api/v1/runs?limit=50 and GET /api/v1/runs/{id}.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ct_bench_api python bench/api_throughput.py \
        [--runs 100000] [--clients 32] [--seconds 30] [--warmup 5] [--workers 2] [--threads 8] [--url http://127.0.0.1:8000]

Seeds runs like bench/pages.py (COPY on PostgreSQL) and issues an API key. Without --url it serves the app
itself: under gunicorn when it is installed (`gunicorn -w WORKERS --threads THREADS`), else with a
small pre-fork server (WORKERS forked processes sharing one socket, each a threaded wsgiref server). The
second is a stand-in and is slower than gunicorn, so report which one was used. The load generator is an
aiohttp client on uvloop with `--clients` requests in flight. It prints
requests/s, p50/p99 latency and the error count for each endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The virtualenv's gunicorn (requirements.txt), also when .venv/bin is not on PATH.
GUNICORN = shutil.which("gunicorn", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
sys.path.insert(0, str(ROOT))

from bench.harness import cpu_seconds, setup_django  # noqa: E402
from bench.pages import ensure_orgs, seed  # noqa: E402
from providers.clients.event_loop import new_event_loop  # noqa: E402


def serve_prefork(workers: int, threads: int) -> tuple[str, list[int]]:
    """Fork `workers` processes serving the WSGI app on one listening socket (after the DB work in the
    parent is closed, so no connection crosses a fork)."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

    from django.db import connections

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        request_queue_size = 256

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    port = listener.getsockname()[1]
    connections.close_all()
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            from django.core.wsgi import get_wsgi_application

            server = Server(("127.0.0.1", port), Quiet, bind_and_activate=False)
            server.socket = listener
            server.server_name, server.server_port = "127.0.0.1", port
            server.setup_environ()
            server.set_app(get_wsgi_application())
            server.serve_forever()
            os._exit(0)
        pids.append(pid)
    return f"http://127.0.0.1:{port}", pids


def serve_gunicorn(workers: int, threads: int) -> tuple[str, list[int]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        GUNICORN or "gunicorn", "comfytrack.wsgi", "-b", f"127.0.0.1:{port}",
        "-w", str(workers), "--threads", str(threads), "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=os.environ.copy())
    return f"http://127.0.0.1:{port}", [process.pid]


async def load(url: str, key: str, clients: int, seconds: float) -> tuple[int, list[float], int]:
    """`clients` loops, each sending the next request as soon as the previous answer is read. Plain
    aiohttp on uvloop: the load generator shares the 2 cores with the server, so it should cost little."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, headers={"X-API-Key": key}, timeout=timeout) as http:

        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    async with http.get(url) as response:
                        await response.read()
                        ok = response.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += not ok

        await asyncio.gather(*(worker() for _ in range(clients)))
    return len(latencies), latencies, errors


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def server_cpu(server_pids: list[int]) -> dict[str, dict[int, float]]:
    """CPU so far of the app server's processes and of PostgreSQL's backends for this database: per request
    it is a figure that other work sharing the machine disturbs far less than requests/s. The backends are
    read from this machine's /proc, so the database figure means something only for a local PostgreSQL."""
    from django.db import connection

    app = {pid: cpu_seconds(pid) for root in server_pids for pid in (root, *_children(root))}
    database = {}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            database = {pid: cpu_seconds(pid) for (pid,) in cursor.fetchall()}
    return {"app": app, "database": database}


def cpu_per_request(before: dict, after: dict, requests: int) -> str:
    # Processes gone by the second sample read 0 and are left out (their last share is lost, never negative).
    spent = {
        part: sum(max(cpu - before[part].get(pid, 0.0), 0.0) for pid, cpu in after[part].items() if cpu)
        for part in ("app", "database")
    }
    return f"{spent['app'] / max(requests, 1) * 1000:.2f} / {spent['database'] / max(requests, 1) * 1000:.2f}"


def wait_until_up(base: str, key: str) -> None:
    import httpx

    for _ in range(100):
        try:
            if httpx.get(f"{base}/api/v1/runs?limit=1", headers={"X-API-Key": key}, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the server at {base} did not answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=5, help="seconds of load before each measurement")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--url", help="an already running server (else one is started)")
    args = parser.parse_args()
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
    os.environ["COMFYTRACK_API_RATE"] = "100000000/min"
    # A thread per request in the stand-in server: persistent connections would pile up (one per dead
    # thread) until PostgreSQL refuses new clients, so each request closes its own. gunicorn gets 60 s.
    os.environ["CONN_MAX_AGE"] = "60" if GUNICORN and not os.environ.get("BENCH_NO_GUNICORN") else "0"
    db = setup_django()
    from accounts.models import ApiKey
    from runs.models import Run

    _, providers = ensure_orgs()
    seed(providers, args.runs)
    organization = providers[0].organization
    key = ApiKey.issue(organization, "bench")[1]
    run_code = Run.objects.filter(organization=organization).values_list("code", flat=True).first()
    pids: list[int] = []
    if args.url:
        base, server = args.url.rstrip("/"), "given"
    elif GUNICORN and not os.environ.get("BENCH_NO_GUNICORN"):
        (base, pids), server = serve_gunicorn(args.workers, args.threads), "gunicorn"
    else:
        (base, pids), server = serve_prefork(args.workers, args.threads), "pre-fork wsgiref (no gunicorn installed)"
    try:
        wait_until_up(base, key)
        print(f"database: {db}; {args.runs:,} runs; server: {server}, {args.workers} workers; {args.clients} clients")
        print(f"{'endpoint':22} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}  CPU ms/request: app / db")
        for label, path in [
            ("GET /runs?limit=50", "/api/v1/runs?limit=50"),
            ("GET /runs/{id}", f"/api/v1/runs/{run_code}"),
        ]:
            # Warm up first: fresh worker threads open their database connections and prepare their
            # statements on first use, which is not the steady state being measured.
            asyncio.run(load(base + path, key, args.clients, args.warmup), loop_factory=new_event_loop)
            before = server_cpu(pids)
            count, latencies, errors = asyncio.run(
                load(base + path, key, args.clients, args.seconds), loop_factory=new_event_loop
            )
            cpu = cpu_per_request(before, server_cpu(pids), count)
            cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
            print(
                f"{label:22} {count / args.seconds:8.0f} {cuts[49] * 1000:8.1f} {cuts[98] * 1000:8.1f} {errors:7d}"
                f"  {cpu}"
            )
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGTERM)


if __name__ == "__main__":
    main()
