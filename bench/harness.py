"""What the benchmarks share: a migrated database, the fake provider in its own process with runs on it,
and the CPU a process has spent (Linux /proc)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def setup_django() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        path = Path(tempfile.gettempdir()) / "comfytrack-bench.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = url = f"sqlite:///{path}"
    elif url.startswith("postgres"):
        ensure_postgres_database(url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comfytrack.test_settings")
    os.environ.setdefault("CONN_MAX_AGE", "0")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return url.split("@")[-1]


def ensure_postgres_database(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    name = name.split("?")[0]
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def cpu_seconds(pid: int, *, of_ended_children: bool = False) -> float:
    """User + system CPU of one process so far (Linux /proc), 0 once it is gone; or, with
    `of_ended_children`, of its children that have ended (and been waited for)."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    first = 13 if of_ended_children else 11  # cutime, cstime; else utime, stime
    return (int(fields[first]) + int(fields[first + 1])) / os.sysconf("SC_CLK_TCK")


def parent_pid(pid: int) -> int:
    return int(_stat_fields(pid)[1])


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat's fields after the command name (which may hold spaces and parentheses)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


class RemoteFake:
    """The fake provider in its own process (`python -m providers.fake`), like a real remote provider."""

    def __init__(self, latency_ms: float) -> None:
        import socket

        from providers.fake.state import FakeState

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.root = f"http://127.0.0.1:{self.port}"
        self.latency_ms = latency_ms
        self.state = FakeState()  # only for its default secrets; the real state lives in the child

    def __enter__(self) -> RemoteFake:
        import httpx

        command = [sys.executable, "-m", "providers.fake", "--port", str(self.port)]
        command += ["--latency-ms", str(self.latency_ms)]
        self.process: subprocess.Popen[bytes] = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
        for _ in range(100):
            try:
                httpx.get(f"{self.root}/_fake/health", timeout=1).raise_for_status()
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise SystemExit("the fake provider process did not start")

    def __exit__(self, *exc_info: object) -> None:
        self.process.terminate()
        self.process.wait(10)

    def base_url(self, kind: str) -> str:
        from providers.fake.server import KINDS

        return self.root + KINDS[kind][1]

    def secret(self, kind: str) -> dict[str, str]:
        return dict(self.state.secrets[kind])

    def set_faults(self, **faults: float | str) -> None:
        import httpx

        httpx.post(f"{self.root}/_fake/faults", json=faults, timeout=10).raise_for_status()


def fresh_provider(fake, kind: str, org_slug: str, org_name: str, name: str):
    """The bench organization with one provider of `kind` on the fake and its credential, earlier runs gone."""
    from accounts.models import Organization
    from providers.models import Credential, Provider
    from runs.models import Run

    Run.objects.filter(organization__slug=org_slug).delete()
    Provider.objects.filter(organization__slug=org_slug).delete()
    org, _ = Organization.objects.get_or_create(slug=org_slug, defaults={"name": org_name})
    provider = Provider.objects.create(organization=org, name=name, kind=kind, base_url=fake.base_url(kind))
    credential = Credential(provider=provider, name="default")
    credential.set_secret(fake.secret(kind))
    credential.save()
    return org, provider, credential


def add_finished_runs(fake, kind: str, n: int, phase: str, workflow: dict | None = None) -> list[str]:
    """N runs on the fake that are already finished when the engine first looks (ran `workflow`, if given)."""
    if isinstance(fake, RemoteFake):
        import httpx

        ids: list[str] = []
        for start in range(0, n, 2000):
            body = {"kind": kind, "count": min(2000, n - start), "script": [[0.0, phase]], "workflow": workflow}
            ids += httpx.post(f"{fake.root}/_fake/runs", json=body, timeout=60).json()["ids"]
        return ids
    return [fake.add_run(kind, script=((0.0, phase),), workflow=workflow).external_id for _ in range(n)]


def module_at(rev: str, paths: tuple[str, ...], name: str) -> ModuleType:
    """The module at `rev` (the first of `paths` that exists there), loaded beside the current one under
    `name`, so a benchmark can run older code and current code in one process."""
    for where in paths:
        shown = subprocess.run(["git", "show", f"{rev}:{where}"], cwd=ROOT, capture_output=True, text=True)
        if shown.returncode == 0:
            break
    else:
        raise SystemExit(f"{rev} has none of {', '.join(paths)}")
    path = Path(tempfile.gettempdir()) / f"{name}.py"
    path.write_text(shown.stdout)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
