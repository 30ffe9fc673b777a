"""A compressed copy's ratio while it runs: the bytes pg_basebackup has written into the copy's
directory (uncompressed, WAL left out: ManagedInstance.copied_data_bytes) over the bytes its base
backup connection has received.

pg_basebackup's -P reports count what the source has read, which runs ahead of what reached the
client by the socket buffers' worth (several MB at the start), and they come once a second. The
bytes on disk are what has passed the relay, a tenth of a second ago: their ratio is what a
source-counting budget must charge the next wire bytes (engine/bandwidth.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Below this many wire bytes the ratio is mostly tar headers and the first catalog files.
MIN_WIRE_BYTES = 256 * 1024
_INTERVAL_SECONDS = 0.1
# The pacer's ratio is of the bytes of about the last second.
RECENT_SECONDS = 1.0
# A walk of a large copy (thousands of files) may take a while: sample at most 1/10 of the time.
_WALK_SHARE = 0.1


class RatioWatch:
    """Samples written() and wire() in a thread. `ratio` is the whole copy's so far
    (for the Progress fields); `on_ratio` gets the ratio of the last second's bytes (what the pacer
    charges: a copy's catalogs and indexes compress far better than its tables)."""

    def __init__(
        self,
        written: Callable[[], int],
        wire: Callable[[], int],
        on_ratio: Callable[[float], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._written = written
        self.wire = wire
        self.on_ratio = on_ratio
        self.ratio: float | None = None
        self.written = 0  # at the last sample
        self._clock = clock
        self._since = (0, 0)  # (written, wire) when on_ratio was last called
        self._since_at = float("-inf")  # the first ratio goes out at once
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="copy-ratio", daemon=True)

    def sample(self) -> float | None:
        """Take a sample; returns the ratio handed to on_ratio, or None when none was."""
        wire = self.wire()
        if wire < MIN_WIRE_BYTES:
            return None
        written = self._written()
        if written <= 0:
            return None
        self.written = written
        self.ratio = max(written / wire, 1.0)
        now = self._clock()
        if now - self._since_at < RECENT_SECONDS:
            return None
        new_written, new_wire = written - self._since[0], wire - self._since[1]
        if new_wire < MIN_WIRE_BYTES / 4:
            return None  # the link is (nearly) idle: keep charging the last ratio
        self._since, self._since_at = (written, wire), now
        recent = max(new_written / new_wire, 1.0)
        self.on_ratio(recent)
        return recent

    def _run(self) -> None:
        pause = _INTERVAL_SECONDS
        while not self._stop.wait(pause):
            began = time.monotonic()
            self.sample()
            pause = max(_INTERVAL_SECONDS, (time.monotonic() - began) / _WALK_SHARE)

    def start(self) -> None:
        self._thread.start()

    @property
    def sampling(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop sampling (a watch never started stops at once)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
