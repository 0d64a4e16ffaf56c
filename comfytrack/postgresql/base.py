"""Django's PostgreSQL backend, with a health check that costs no round trip while nothing is wrong.

With `CONN_HEALTH_CHECKS`, Django sends `SELECT 1` on every request that reuses a persistent
connection: a round trip and a statement per API request, a fifth of a detail request's time under
load (bench/api_throughput.py). An idle connection with nothing to read is one the server has not
closed, so only when the socket has something pending (the server's "terminating connection" message,
or end of file after a restart or crash) is the full check run. Connections the network silently drops
are caught by neither check and still fail on first use, as before.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        try:
            readable, _, _ = select.select([connection.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable or super().is_usable()
