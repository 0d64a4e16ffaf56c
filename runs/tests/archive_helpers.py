"""Helpers for the archive tests: rows, a stub provider client, fake-provider file URLs and a tiny
scriptable HTTP server on loopback (for redirects, stalls and oversized bodies)."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from django.core.files.storage import FileSystemStorage
from PIL import Image

from accounts.models import Organization
from providers import clients
from providers.clients.base import ProviderClient, SecretModel
from providers.fake.files import _signature
from providers.models import Credential, Provider
from runs.models import Run, RunOutput

STUB_KIND = "comfyui"
TOKEN = "stub-secret-token"


class StubSecret(SecretModel):
    token: str | None = None


class StubClient(ProviderClient):
    """Just enough client for downloads: auth headers for its own host (the base class does the rest)."""

    kind = STUB_KIND
    label = "Stub"
    Secret = StubSecret

    def auth_headers(self) -> dict[str, str]:
        token = getattr(self.secret, "token", None)
        return {"Authorization": f"Bearer {token}"} if token else {}


@contextmanager
def stub_client_registered() -> Iterator[None]:
    """Point the provider kind at StubClient: the real clients live on other branches until merged."""
    original = clients.CLIENTS.get(STUB_KIND)
    clients.CLIENTS[STUB_KIND] = f"{__name__}.StubClient"
    clients.client_class.cache_clear()
    try:
        yield
    finally:
        if original is None:
            clients.CLIENTS.pop(STUB_KIND, None)
        else:
            clients.CLIENTS[STUB_KIND] = original
        clients.client_class.cache_clear()


def make_output(
    base_url: str,
    url: str,
    *,
    expires: datetime | None = None,
    kind: str = RunOutput.Kind.IMAGE,
    filename: str = "ComfyUI_00001_.png",
) -> RunOutput:
    slug = f"org-{uuid.uuid4().hex[:8]}"
    org = Organization.objects.create(name=slug, slug=slug)
    provider = Provider.objects.create(organization=org, name="p", kind=STUB_KIND, base_url=base_url)
    credential = Credential.objects.create(provider=provider, secret={"token": TOKEN})
    run = Run.objects.create(
        organization=org, provider=provider, credential=credential, external_id="", status=Run.Status.SUCCEEDED
    )
    return RunOutput.objects.create(
        run=run,
        key=f"9/{filename}",
        kind=kind,
        filename=filename,
        provider_url=url,
        provider_url_expires=expires,
    )


def fake_file_url(root: str, kind: str, external_id: str, filename: str, expires: int) -> str:
    """The URL providers.fake.files.file_url would hand out (it needs an aiohttp request to build one)."""
    path = f"/files/{kind}/{external_id}/{filename}"
    return f"{root}{path}?expires={expires}&sig={_signature(path, expires)}"


def png_of_size(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


class FullDisk(FileSystemStorage):
    """A disk that fills up after `room` bytes: the write fails part-way, as it does on a real full
    disk, leaving what it wrote so far behind (FileSystemStorage does not remove it)."""

    def __init__(self, room: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.room = room

    def _save(self, name, content):
        path = Path(self.path(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.read()
        with open(path, "wb") as out:
            out.write(data[: max(self.room, 0)])
            if len(data) > self.room:
                self.room = 0  # the partial write took what was left
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return name


# -- a scriptable loopback HTTP server ------------------------------------------------------------

Route = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class LocalServer:
    routes: dict[str, Route]
    hits: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)  # what each POST sent
    port: int = 0

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def local_server(routes: dict[str, Route]) -> Iterator[LocalServer]:
    state = LocalServer(routes)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            state.hits.append((path, {k.lower(): v for k, v in self.headers.items()}))
            route = state.routes.get(path)
            if route is None:
                self.send_error(404)
                return
            # The client hangs up on purpose when it hits the cap or the deadline.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                route(self)

        def do_POST(self) -> None:
            state.bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            self.do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def body(data: bytes, content_type: str = "application/octet-stream", *, length: bool = True) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        if length:
            handler.send_header("Content-Length", str(len(data)))
        else:
            handler.send_header("Connection", "close")
        handler.end_headers()
        for start in range(0, len(data), 16384):
            handler.wfile.write(data[start : start + 16384])

    return route


def redirect(location: str, status: int = 302) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return route


def stall(seconds: float, *, after_headers: bool = False) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        if after_headers:
            handler.send_response(200)
            handler.send_header("Content-Length", "100000")
            handler.end_headers()
            handler.wfile.write(b"x" * 10)
            handler.wfile.flush()
        time.sleep(seconds)

    return route
