"""Fixtures shared by every app's tests."""

from __future__ import annotations

import pytest

from providers.fake import FakeProviderServer


@pytest.fixture(scope="session")
def fake_server():
    """One fake provider server (all five APIs) on a loopback port for the whole session."""
    with FakeProviderServer() as server:
        yield server


@pytest.fixture
def fake(fake_server):
    """The fake server, reset before and after each test."""
    fake_server.state.reset()
    yield fake_server
    fake_server.state.reset()
