"""A local webhook receiver (http.server on loopback) for delivery tests."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from accounts.models import ApiKey
from webhooks.models import WebhookEndpoint


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    status: int = 200
    hang: float = 0.0
    location: str = ""  # sent as Location (with a 3xx status)
    retry_after: str = ""  # sent as Retry-After
    requests: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hook"


def _start_receiver() -> Receiver:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            receiver.requests.append(Received(self.path, headers, body, time.monotonic()))
            if receiver.hang:
                receiver.release.wait(receiver.hang)  # a receiver that never answers in time
            try:
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                if receiver.retry_after:
                    self.send_header("Retry-After", receiver.retry_after)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"thanks" if receiver.status < 300 else b"nope: try later")
            except OSError:
                pass  # the client gave up on us (that is the point of a hanging receiver)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver


@pytest.fixture
def make_receiver(settings):
    settings.COMFYTRACK_WEBHOOK_ALLOW_PRIVATE_HOSTS = ["127.0.0.1"]
    started: list[Receiver] = []

    def make(**kwargs) -> Receiver:
        receiver = _start_receiver()
        for name, value in kwargs.items():
            setattr(receiver, name, value)
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.release.set()
        receiver.server.shutdown()
        receiver.server.server_close()


@pytest.fixture
def receiver(make_receiver):
    return make_receiver()


@pytest.fixture
def make_endpoint(db):
    def make(org, url: str, events: list[str] | None = None, **fields) -> tuple[WebhookEndpoint, str]:
        endpoint = WebhookEndpoint(organization=org, url=url, events=events or [], **fields)
        secret = endpoint.rotate_secret()
        endpoint.save()
        return endpoint, secret

    return make


@pytest.fixture
def key(org):
    return ApiKey.issue(org, "ci")[1]
