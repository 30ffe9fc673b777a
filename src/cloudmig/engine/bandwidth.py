"""The per-host bandwidth budget: one token bucket in the service process, shared by every running
copy (the base backup and the WAL stream of each), so that N copies together stay within it.

Each copy's relay (pg/relay.py) asks the bucket before passing on bytes from its source; the bucket
hands out time slots in arrival order, so the rate is split among the copies that are sending and a
copy that starts or ends changes the others' share at once. What a byte costs depends on what the
budget counts (`copy_budget_counts`):

- "wire": bytes on the network, i.e. what the relay receives (compressed when the copy is).
- "source": bytes read from the sources' disks: the base backup's wire bytes x its compression
  ratio (measured as the copy goes: bytes written into the copy's directory / wire bytes, see
  engine/copy_ratio.py), the WAL stream's wire bytes as they are (WAL is sent uncompressed).

A source reads ahead of the relay by what the socket buffers between them hold (a few MB, more when
compressed): the budget holds from the copies' second second on, not over their first burst.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# A copy may run this far ahead of its slots: smooths the sleeps without a visible burst.
_SLACK_SECONDS = 0.02
COUNTS = ("wire", "source")
# A compressed copy is charged as if it compressed this well until its ratio is first measured
# (engine/copy_ratio.py, after 256 kB on the wire): server-side zstd does 2-4x on typical data.
ASSUMED_RATIO = 3.0


class TokenBucket:
    def __init__(self, rate_bytes_per_second: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_bytes_per_second <= 0:
            raise ValueError("the rate must be positive")
        self.rate = float(rate_bytes_per_second)
        self._clock = clock
        self._next = 0.0  # when the capacity handed out so far is used up
        self._lock = threading.Lock()

    def reserve(self, nbytes: float) -> float:
        """Take `nbytes` of capacity; returns how long the caller must wait before using it."""
        with self._lock:
            now = self._clock()
            start = max(self._next, now - _SLACK_SECONDS)
            self._next = start + nbytes / self.rate
            return max(0.0, self._next - now - _SLACK_SECONDS)

    def wait(self, nbytes: float) -> None:
        delay = self.reserve(nbytes)
        if delay > 0:
            time.sleep(delay)


class CopyPacer:
    """One copy's view of the host budget: charges wire bytes, or (source) the base backup's wire
    bytes x its ratio."""

    def __init__(self, bucket: TokenBucket, counts: str) -> None:
        if counts not in COUNTS:
            raise ValueError(f"copy_budget_counts must be one of {COUNTS}")
        self.bucket = bucket
        self.counts = counts
        self.ratio = 1.0  # uncompressed / wire, updated by the copy's progress

    def wait(self, nbytes: int, connection: int = 0) -> None:
        compressed = self.counts == "source" and connection == 0
        self.bucket.wait(nbytes * (self.ratio if compressed else 1.0))


_host_lock = threading.Lock()
_host_bucket: TokenBucket | None = None


def host_bucket(rate_kb: int) -> TokenBucket | None:
    """The process-wide bucket for a budget of `rate_kb` kB/s (None: no budget). A changed rate
    (another service in the same process, as in tests) gets a new bucket."""
    global _host_bucket
    if rate_kb <= 0:
        return None
    rate = rate_kb * 1024.0
    with _host_lock:
        if _host_bucket is None or _host_bucket.rate != rate:
            _host_bucket = TokenBucket(rate)
        return _host_bucket
