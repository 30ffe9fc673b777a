"""How fast the link from the source to cloudmig carries data, measured before a copy.

The source sends a stream it generates in memory (`COPY (SELECT repeat(...)) TO STDOUT`): no disk is
read, no checkpoint is asked for, any role may run it, and the statement ends by itself (no cancel,
so nothing lands in the source's log). A first small round warms the connection up (TCP slow start)
and sizes the second, which is timed from its first byte to its last.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any

import psycopg

_ROW_BYTES = 64 * 1024  # one COPY message per row: the resolution of the timing
_WARMUP_BYTES = 512 * 1024
# The decision only tells links at 6, 60 and 200 MB/s apart (copy_plan.py), so a
# twentieth of a second is plenty; every byte of the probe delays the copy on the same link (a 0.25 s
# target sized from an optimistic warm-up sent 54 MB, 0.45 s, over 1 Gbit/s; 0.1 s sent 16 MB in
# 0.14 s, longer than the assessment it runs beside).
_TARGET_SECONDS = 0.05
_MIN_BYTES, _MAX_BYTES = 1024 * 1024, 8 * 1024 * 1024


@dataclass(frozen=True)
class LinkMeasurement:
    bytes: int
    seconds: float

    @property
    def bytes_per_second(self) -> float:
        return self.bytes / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class _Round:
    bytes: int  # all the rows
    after_first: int  # the rows after the first
    to_first: float  # seconds from the statement to its first row (the round trip and the start)
    from_first: float  # seconds from the first row to the end
    total: float


def _round(conn: psycopg.Connection[Any], nbytes: int) -> _Round:
    t0 = time.monotonic()
    first_at: float | None = None
    first = after_first = 0
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY (SELECT repeat('x', %s) FROM generate_series(1, %s)) TO STDOUT",
            (_ROW_BYTES - 1, max(nbytes // _ROW_BYTES, 2)),
        ) as copy,
    ):
        for block in copy:
            if first_at is None:
                first_at, first = time.monotonic(), len(block)
            else:
                after_first += len(block)
    end = time.monotonic()
    first_at = first_at or end
    return _Round(first + after_first, after_first, first_at - t0, end - first_at, end - t0)


def measure_link(conn: psycopg.Connection[Any]) -> LinkMeasurement:
    """Throughput source → here, in bytes per second of TCP payload (about 0.1 s on links of
    100 Mbit/s and more, 1.3 s at 10 Mbit/s)."""
    # The warm-up round is not a measurement: buffers and a shaper's burst let its first
    # megabyte arrive faster than the link carries a stream.
    warm = _round(conn, _WARMUP_BYTES)
    rough = warm.after_first / warm.from_first if warm.from_first > 0 and warm.after_first > 0 else 0.0
    rough = rough or _MAX_BYTES / _TARGET_SECONDS
    timed = _round(conn, int(min(max(rough * _TARGET_SECONDS, _MIN_BYTES), _MAX_BYTES)))
    streamed = LinkMeasurement(timed.after_first, max(timed.from_first, 1e-6))
    # A reader held up before the first row (a busy CPU, another thread's turn) finds the rest
    # already in the socket's receive buffer (megabytes) and reads it at memory speed: timed from
    # the first row, a 1 Gbit/s link once measured 939 MB/s. The whole round, less the warm-up's
    # wait for its first row, can only be as short as the link allows: the lower of the two holds.
    whole = timed.total - warm.to_first
    if whole <= 0:
        return streamed
    bounded = LinkMeasurement(timed.bytes, whole)
    return min(streamed, bounded, key=lambda m: m.bytes_per_second)


def local_address(host: str, port: int) -> str | None:
    """The address of `host` when it is this machine's own (loopback, or bound to one of its
    interfaces): no network lies between, so there is nothing to measure. None otherwise."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return None
    for family, kind, proto, _, addr in infos:
        ip = str(addr[0])
        if ipaddress.ip_address(ip.split("%")[0]).is_loopback:
            return ip
        with contextlib.closing(socket.socket(family, kind, proto)) as s:
            try:
                s.bind((ip, 0))  # only this machine's own addresses can be bound
            except OSError:
                continue
            return ip
    return None
