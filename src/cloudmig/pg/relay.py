"""A counting, paced TCP relay between pg_basebackup and the source.

pg_basebackup reports the bytes it wrote (uncompressed) but not the bytes it received, and its own
--max-rate is per process and fixed at start. Its connections (the base backup and the WAL stream)
therefore go through this relay when the copy is compressed or a bandwidth budget applies: the relay
counts the bytes that come from the source (the bytes on the wire, as TCP payload) and, before
passing a chunk on, waits for the pacer (a shared token bucket). While it waits it does not read,
the kernel's receive buffer fills and TCP flow control slows the source's sender: nothing is dropped
or restarted, and a budget shared by several copies adapts as copies start and end.

The relay listens on a loopback address of its own (127.64.0.0/10) with the source's port number,
so pg_basebackup connects with `host=<source host> hostaddr=<relay address> port=<source port>`:
the passfile entry and TLS host checks still see the source's name and port.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import threading
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("cloudmig.pg.relay")

_CHUNK = 64 * 1024
_ACCEPT_POLL_SECONDS = 0.2


class Pacer(Protocol):
    def wait(self, nbytes: int, connection: int) -> None:
        """Block until `nbytes` more bytes from the source may be passed on over `connection`
        (its index in accept order: 0 the base backup, then the WAL stream)."""


class RelayUnavailable(OSError):
    """No loopback address could be bound with the source's port (e.g. a privileged port, not root)."""


class CopyRelay:
    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        pacer: Pacer | None = None,
        connect_timeout: float = 10.0,
        receive_buffer: int | None = None,
    ) -> None:
        self.upstream = (upstream_host, int(upstream_port))
        self.pacer = pacer
        self.connect_timeout = connect_timeout
        self.receive_buffer = receive_buffer
        self._down = 0  # bytes from the source, passed on
        self._up = 0
        self._per_connection: list[int] = []  # bytes from the source, by connection in accept order
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self.listen_host = ""

    # ---- counters -------------------------------------------------------------------------------

    @property
    def wire_bytes(self) -> int:
        """Bytes received from the source over all connections so far."""
        return self._down

    @property
    def sent_bytes(self) -> int:
        return self._up

    def connection_bytes(self) -> list[int]:
        """Bytes from the source per connection, in the order pg_basebackup opened them (the base
        backup first, then the WAL stream)."""
        with self._lock:
            return list(self._per_connection)

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> CopyRelay:
        listener = self._bind()
        listener.listen(8)
        listener.settimeout(_ACCEPT_POLL_SECONDS)
        self._listener = listener
        self._spawn(self._accept_loop, "relay-accept")
        return self

    def _bind(self) -> socket.socket:
        rng = random.SystemRandom()
        last: OSError | None = None
        for _ in range(20):
            host = f"127.{rng.randrange(64, 128)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((host, self.upstream[1]))
            except OSError as exc:
                sock.close()
                last = exc
                continue
            self.listen_host = host
            return sock
        raise RelayUnavailable(f"cannot listen on a loopback address with port {self.upstream[1]}: {last}")

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            socks = list(self._sockets)
            self._sockets.clear()
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=5)

    def __enter__(self) -> CopyRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing -------------------------------------------------------------------------------

    def _spawn(self, fn: Callable[..., None], name: str, *args: object) -> None:
        t = threading.Thread(target=fn, args=args, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _track(self, s: socket.socket) -> bool:
        with self._lock:
            if self._closed.is_set():
                return False
            self._sockets.add(s)
            return True

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            if not self._track(client):
                client.close()
                return
            try:
                upstream = self._connect()
            except OSError as exc:
                log.warning("relay: cannot reach the source %s:%s: %s", *self.upstream, exc)
                client.close()
                continue
            if not self._track(upstream):
                upstream.close()
                client.close()
                return
            with self._lock:
                index = len(self._per_connection)
                self._per_connection.append(0)
            self._spawn(self._pump, "relay-down", upstream, client, index)
            self._spawn(self._pump, "relay-up", client, upstream, None)

    def _connect(self) -> socket.socket:
        # The receive buffer bounds the burst a paced connection takes before flow control bites;
        # it must be set before connecting (window scaling is agreed in the handshake).
        host, port = self.upstream
        last: OSError | None = None
        for family, kind, proto, _, addr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            s = socket.socket(family, kind, proto)
            try:
                if self.receive_buffer:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(self.connect_timeout)
                s.connect(addr)
                s.settimeout(None)
                return s
            except OSError as exc:
                s.close()
                last = exc
        raise last or OSError(f"no address for {host}")

    def _pump(self, src: socket.socket, dst: socket.socket, index: int | None) -> None:
        """Copy src to dst until EOF; `index`: the connection's counter when src is the source."""
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        try:
            while True:
                n = src.recv_into(buf)
                if n == 0:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                if index is not None:
                    if self.pacer is not None:
                        self.pacer.wait(n, index)
                    with self._lock:
                        self._down += n
                        self._per_connection[index] += n
                else:
                    with self._lock:
                        self._up += n
                dst.sendall(view[:n])
        except OSError:
            # One side went away (pg_basebackup finished or was killed): end both.
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
