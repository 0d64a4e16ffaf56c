from __future__ import annotations

from collections.abc import Iterator

import pytest

from providers.tests import loopback


@pytest.fixture(autouse=True)
def loopback_handler_failures() -> Iterator[None]:
    """A loopback handler's failed assertion fails its test, even when the client turned the server's 500
    into the ProviderError the test expected."""
    if loopback.provider_server.cache_info().currsize:
        loopback.provider_server().take_failures()
    yield
    if loopback.provider_server.cache_info().currsize:
        server = loopback.provider_server()
        server.handler = None
        if failures := server.take_failures():
            pytest.fail("the loopback provider's handler failed:\n" + "\n".join(failures), pytrace=False)
