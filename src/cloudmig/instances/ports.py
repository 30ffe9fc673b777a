"""Port allocation for managed instances."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Collection

from cloudmig.errors import QuotaExceeded


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether nothing listens on host:port (a bind test, without SO_REUSEADDR: conservative)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def allocate_port(used: Collection[int], low: int, high: int) -> int:
    """The first port in [low, high] that no instance uses (`used`) and nothing listens on."""
    if low > high:
        raise ValueError(f"empty port range {low}-{high}")
    taken = set(used)
    for port in range(low, high + 1):
        if port not in taken and port_is_free(port):
            return port
    raise QuotaExceeded(f"No free port is left for a new instance in the range {low}-{high}.")
