"""The event loop for long-lived async work: uvloop where it is installed, else asyncio's own.

uvloop (libuv) cuts the CPU each HTTP request costs the sweep's fan-out; it is optional (it does not
build on Windows), so everything also runs on the standard loop.
"""

from __future__ import annotations

import asyncio


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - exercised where uvloop is not installed
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
