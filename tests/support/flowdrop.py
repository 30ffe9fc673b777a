"""A TCP forwarder standing for a middlebox on the way to a source (a NAT or a firewall): it can
lose the state of every flow it carries, as one does when it restarts or its table overflows. A
lost flow is neither forwarded nor closed: nothing arrives at either end and nothing is refused,
while new connections pass as before. This machine has no iptables or nft to do it in the kernel."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from types import TracebackType

# Small buffers on the way: a sender behind a lost flow blocks after a few seconds, not minutes.
_BUFFER_BYTES = 64 * 1024


class FlowDroppingForwarder:
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.peer: dict[socket.socket, socket.socket] = {}
        self.lost: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.closed = False
        self.thread = threading.Thread(target=self._loop, name="flow-forwarder", daemon=True)
        self.thread.start()

    def drop_established(self) -> int:
        """Lose every flow carried now; how many there were."""
        with self.lock:
            flows = [s for s in self.peer if s not in self.lost]
            for s in flows:
                self.lost.add(s)
                self.selector.unregister(s)
            return len(flows) // 2

    def _loop(self) -> None:
        while not self.closed:
            with self.lock:
                ready = self.selector.select(timeout=0.1)
                for key, _ in ready:
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self.listener:
                        self._accept()
                    elif sock in self.peer and sock not in self.lost:
                        self._forward(sock)

    def _accept(self) -> None:
        client, _ = self.listener.accept()
        upstream = socket.socket()
        upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER_BYTES)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER_BYTES)
        try:
            upstream.connect(self.target)
        except OSError:
            client.close()
            upstream.close()
            return
        self.peer[client], self.peer[upstream] = upstream, client
        for s in (client, upstream):
            self.selector.register(s, selectors.EVENT_READ)

    def _forward(self, sock: socket.socket) -> None:
        other = self.peer[sock]
        try:
            data = sock.recv(65536)
            if data:
                other.sendall(data)
                return
        except OSError:
            pass
        for s in (sock, other):
            self.selector.unregister(s)
            del self.peer[s]
            s.close()

    def close(self) -> None:
        self.closed = True
        self.thread.join(timeout=5)
        with self.lock:
            for s in [*self.peer, self.listener]:
                with contextlib.suppress(OSError):
                    s.close()
            self.peer.clear()
        self.selector.close()

    def __enter__(self) -> FlowDroppingForwarder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
