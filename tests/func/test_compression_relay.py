"""The copy relay (pg/relay.py): passes bytes unchanged both ways, counts what comes from the source
per connection, and paces it with the host's token bucket. Real TCP sockets on loopback; the
PostgreSQL side of the relay is covered by tests/func/test_compression.py."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from cloudmig.engine.bandwidth import CopyPacer, TokenBucket
from cloudmig.pg.relay import CopyRelay

pytestmark = pytest.mark.func


@pytest.fixture
def upstream() -> Iterator[tuple[int, bytes]]:
    """A server that reads one line and answers with 2 MiB of random bytes, then closes."""
    payload = os.urandom(2 * 1024 * 1024)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                data = b""
                while not data.endswith(b"\n"):
                    data += conn.recv(100)
                conn.sendall(payload)

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1], payload
    stop.set()
    srv.close()


def fetch(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=10) as c:
        c.sendall(b"hello\n")
        chunks = []
        while chunk := c.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_relay_passes_and_counts(upstream: tuple[int, bytes]) -> None:
    port, payload = upstream
    with CopyRelay("127.0.0.1", port) as relay:
        assert relay.listen_host.startswith("127.") and relay.listen_host != "127.0.0.1"
        assert fetch(relay.listen_host, port) == payload
        assert fetch(relay.listen_host, port) == payload
        deadline = time.monotonic() + 5
        while relay.wire_bytes < 2 * len(payload) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert relay.connection_bytes() == [len(payload), len(payload)]
        assert relay.wire_bytes == 2 * len(payload)
        assert relay.sent_bytes == 2 * len(b"hello\n")


def test_relay_paces_with_the_budget(upstream: tuple[int, bytes]) -> None:
    port, payload = upstream
    rate = 4 * 1024 * 1024
    with CopyRelay("127.0.0.1", port, pacer=CopyPacer(TokenBucket(rate), "wire")) as relay:
        t0 = time.monotonic()
        assert fetch(relay.listen_host, port) == payload
        took = time.monotonic() - t0
    # 2 MiB at 4 MiB/s cannot arrive sooner than about half a second (a busy machine only slows it).
    assert took >= len(payload) / rate - 0.05, took
