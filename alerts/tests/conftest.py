"""Real receivers on loopback for alert tests: an SMTP server (aiosmtpd) and an HTTP server that
records what Slack/Discord-style incoming webhooks are sent."""

from __future__ import annotations

import email
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[dict] = []

    async def handle_DATA(self, server, session, envelope):
        parsed = email.message_from_bytes(envelope.content)
        payload = parsed.get_payload(decode=True)
        assert isinstance(payload, bytes)  # a single-part message decodes to its bytes
        body = payload.decode(parsed.get_content_charset() or "utf-8")
        self.messages.append({"to": list(envelope.rcpt_tos), "subject": parsed["Subject"], "data": body})
        return "250 OK"


@pytest.fixture
def smtp(settings):
    """A real SMTP server on 127.0.0.1; Django's SMTP backend pointed at it."""
    mailbox = _Mailbox()
    with socket.socket() as probe:  # a free port (the controller checks its server by connecting to it)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": port, "timeout": 5},
        }
    }
    yield mailbox
    controller.stop()


class Receiver:
    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        self.status = 200
        self.retry_after = ""  # sent as Retry-After
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.posts.append((self.path, json.loads(body or b"null")))
                self.send_response(received.status)
                if received.retry_after:
                    self.send_header("Retry-After", received.retry_after)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def receiver(settings):
    """A local HTTP receiver standing in for Slack's and Discord's incoming webhooks."""
    server = Receiver()
    server.thread.start()
    settings.COMFYTRACK_ALERT_ALLOW_PRIVATE_HOSTS = [f"127.0.0.1:{server.port}"]
    yield server
    server.server.shutdown()
    server.server.server_close()
