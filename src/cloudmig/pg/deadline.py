"""A time limit on queries to a server that may answer nothing at all."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator

import psycopg


@contextlib.contextmanager
def query_deadline(seconds: float, *conns: psycopg.Connection | None) -> Iterator[None]:
    """Break the connections when the block takes longer than `seconds`: a server that answers
    nothing (a frozen host, a network partition) would otherwise hold the query until TCP gives up,
    a quarter of an hour or, when its kernel still acknowledges, for ever. The query then fails
    with OperationalError, as on a broken connection."""
    fds = [c.pgconn.socket for c in conns if c is not None]

    def expire() -> None:
        for fd in fds:
            with contextlib.suppress(OSError):
                dup = socket.socket(fileno=os.dup(fd))
                try:
                    dup.shutdown(socket.SHUT_RDWR)  # wakes the query waiting on this connection
                finally:
                    dup.close()

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
