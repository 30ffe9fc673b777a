"""A compressed copy's ratio while it runs: the bytes pg_basebackup has written into the copy's
directory (uncompressed, WAL left out) over the bytes its base backup connection has received.

pg_basebackup's -P reports count what the source has read, which runs ahead of what reached the
client by the socket buffers' worth (several MB at the start), and they come once a second. The
bytes on disk are what has passed the relay, a tenth of a second ago: their ratio is what a
source-counting budget must charge the next wire bytes (engine/bandwidth.py).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

# pg_basebackup -X stream writes the WAL stream (another connection, uncompressed) under pg_wal.
_WAL_DIR = "pg_wal"
# Below this many wire bytes the ratio is mostly tar headers and the first catalog files.
MIN_WIRE_BYTES = 256 * 1024
_INTERVAL_SECONDS = 0.1
# The pacer's ratio is of the bytes of about the last second.
RECENT_SECONDS = 1.0
# A walk of a large copy (thousands of files) may take a while: sample at most 1/10 of the time.
_WALK_SHARE = 0.1


def written_bytes(directory: Path) -> int:
    """Bytes of the files under `directory` (their length, not their blocks), pg_wal left out."""
    total = 0
    for root, dirs, files in os.walk(directory):
        if root == os.fspath(directory) and _WAL_DIR in dirs:
            dirs.remove(_WAL_DIR)
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total


class RatioWatch:
    """Samples written_bytes(directory) and wire() in a thread. `ratio` is the whole copy's so far
    (for the Progress fields); `on_ratio` gets the ratio of the last second's bytes (what the pacer
    charges: a copy's catalogs and indexes compress far better than its tables)."""

    def __init__(
        self,
        directory: Path,
        wire: Callable[[], int],
        on_ratio: Callable[[float], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.wire = wire
        self.on_ratio = on_ratio
        self.ratio: float | None = None
        self.written = 0  # at the last sample
        self._clock = clock
        self._since = (0, 0)  # (written, wire) at the start of the current second
        self._since_at = clock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="copy-ratio", daemon=True)

    def sample(self) -> float | None:
        """Take a sample; returns the ratio handed to on_ratio, or None when none was."""
        wire = self.wire()
        if wire < MIN_WIRE_BYTES:
            return None
        written = written_bytes(self.directory)
        if written <= 0:
            return None
        self.written = written
        self.ratio = max(written / wire, 1.0)
        now = self._clock()
        first = self._since == (0, 0)
        if not first and now - self._since_at < RECENT_SECONDS:
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
