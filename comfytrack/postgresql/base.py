"""Django's PostgreSQL backend, with a health check that costs no round trip while nothing is wrong.

With `CONN_HEALTH_CHECKS`, Django sends `SELECT 1` on every request that reuses a persistent
connection: a round trip and a statement per API request, a fifth of a detail request's time under
load (bench/api_throughput.py). An idle connection (no transaction open, no result pending) whose socket
has nothing to read is one the server has not closed, so the full check runs only otherwise: when the
server has written (its "terminating connection" message) or closed the socket after a restart or crash,
inside a transaction (an aborted one must fail the check), or when the socket cannot be polled. Still
missed, as by `SELECT 1` itself: a connection the network drops silently, and a termination message
libpq has already read into its own buffer; both fail on first use, as before.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed:
            return False
        if connection.info.transaction_status == TransactionStatus.IDLE and not _readable(connection.fileno()):
            return True
        return super().is_usable()


def _readable(fd: int) -> bool:
    """Whether the socket has data or end of file waiting (poll: no 1024 limit on descriptors, unlike select)."""
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True  # cannot tell: let the full check decide
