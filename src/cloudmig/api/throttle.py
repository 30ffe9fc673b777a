"""Per-access-key request rate limit: one token bucket per key.

A bucket holds at most ``burst`` tokens and refills at ``rate`` tokens per second; a request takes
one token or is refused with `Throttled`, which tells how long until a token is back. The API asks
for a token only after a request's signature has been verified (so nobody can spend another key's
budget) and before its nonce is recorded (so a throttled request changes nothing and its client may
send it again). The tea SDK turns the ``x-acs-retry-after`` header (milliseconds) into a
``ThrottlingException`` with ``retry_after``; plain HTTP clients get ``Retry-After`` (seconds).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from cloudmig import errors

# Buckets of keys unseen for long are full again; drop them when the table grows past this.
MAX_TRACKED_KEYS = 10_000


class Throttled(errors.Throttling):
    """Throttling, with the wait until the key may call again."""

    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__()
        self.retry_after_seconds = max(retry_after_seconds, 0.001)

    @property
    def headers(self) -> dict[str, str]:
        return {
            "x-acs-retry-after": str(max(1, math.ceil(self.retry_after_seconds * 1000))),
            "retry-after": str(max(1, math.ceil(self.retry_after_seconds))),
        }


class TokenBuckets:
    """Thread-safe token buckets keyed by access key id. ``rate <= 0`` disables the limit."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_TRACKED_KEYS,
    ) -> None:
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill time)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def try_acquire(self, key: str) -> float:
        """Take a token for ``key``: 0.0 when granted, else the seconds until one is available."""
        if not self.enabled:
            return 0.0
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + max(0.0, now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                self._prune(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def acquire(self, key: str) -> None:
        """Take a token for ``key`` or raise `Throttled`."""
        wait = self.try_acquire(key)
        if wait > 0:
            raise Throttled(wait)

    def _prune(self, now: float) -> None:
        if len(self._buckets) <= self._max_keys:
            return
        refill = self.burst / self.rate
        for key, (_, last) in list(self._buckets.items()):
            if now - last >= refill:
                del self._buckets[key]
