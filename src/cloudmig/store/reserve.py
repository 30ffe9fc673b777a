"""A space reserve ("ballast") next to the SQLite store, so DeleteDBInstance works on a full disk.

The store, the logs and the instances' data share the data dir's disk. When that disk is full the
store cannot record anything, including the DeleteDBInstance that would free space. cloudmig keeps
a file of `size` bytes allocated in the data dir (`posix_fallocate`, so the blocks are really taken);
a space-freeing call that hits a full disk deletes it and retries its write once. Only such calls
spend it: any other writer (the engine records progress every few seconds) would use it up at once
and leave nothing for the Delete. A background thread makes it again once the disk has twice its
size free, so that taking it back still leaves room.

Filesystems that do not allocate blocks for a preallocated file (compressing or copy-on-write ones
such as ZFS) may hold no space in it; ext4, XFS and tmpfs do.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

RESERVE_FILE = "space-reserve"
# How often a missing reserve is tried again.
RESTORE_CHECK_SECONDS = 10.0


class SpaceReserve:
    def __init__(self, directory: Path, size_bytes: int, *, check_seconds: float = RESTORE_CHECK_SECONDS):
        self.path = directory / RESERVE_FILE
        self.size = size_bytes
        self.check_seconds = check_seconds
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._restorer: threading.Thread | None = None

    @property
    def held(self) -> bool:
        try:
            return self.path.stat().st_size == self.size
        except FileNotFoundError:
            return False

    def free_bytes(self) -> int:
        st = os.statvfs(self.path.parent)
        return st.f_bavail * st.f_frsize

    def ensure(self) -> bool:
        """Make the reserve if it is missing and the disk has twice its size free; True when held.
        When it cannot be made now, a background thread tries again until it can."""
        if self._make():
            return True
        log.warning(
            "no space reserve: %s needs %d MiB and the disk has %d MiB free; DeleteDBInstance may "
            "not work if this disk fills up. Tried again every %.0f s",
            self.path,
            self.size >> 20,
            self.free_bytes() >> 20,
            self.check_seconds,
        )
        self._restore_later()
        return False

    def release(self) -> bool:
        """Give the reserve's space back to the disk; False when there was none to give."""
        with self._lock:
            try:
                self.path.unlink()
            except FileNotFoundError:
                return False
        log.error(
            "DISK FULL: released the %d MiB space reserve %s so that a space-freeing call can be "
            "recorded; it is made again once %d MiB are free on that disk",
            self.size >> 20,
            self.path,
            (2 * self.size) >> 20,
        )
        self._restore_later()
        return True

    def close(self) -> None:
        self._stop.set()

    def _make(self) -> bool:
        with self._lock:
            if self.held:
                return True
            if self.free_bytes() < 2 * self.size:
                return False
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)
            except OSError as exc:  # the disk filled meanwhile (or cannot preallocate)
                log.warning("could not make the space reserve %s: %s", self.path, exc)
                tmp.unlink(missing_ok=True)
                return False
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            return True

    def _restore_later(self) -> None:
        with self._lock:
            if self._restorer is not None:
                return
            self._restorer = threading.Thread(target=self._restore_loop, name="space-reserve", daemon=True)
            self._restorer.start()

    def _restore_loop(self) -> None:
        while not self._stop.wait(self.check_seconds):
            try:
                self._make()
            except OSError as exc:
                log.warning("could not make the space reserve %s: %s", self.path, exc)
            with self._lock:
                if not self.held:
                    continue
                # Decided under the lock: a release from now on starts a new restorer.
                self._restorer = None
            log.info("space reserve %s (%d MiB) is in place again", self.path, self.size >> 20)
            return
