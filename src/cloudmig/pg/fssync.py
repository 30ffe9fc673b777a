"""Making a fresh copy durable with one syncfs(2) per file system instead of an fsync per file.

pg_basebackup syncs every file and directory it wrote one by one, and a server started on a copy
does the same again (its pg_control says it was running). On ext4 each of those fsyncs costs a
journal commit or a cache flush: for a 180 MB cluster, 0.13 s after the copy and 0.04 s at the
standby's start, against 0.09 s for one syncfs. Linux reports write-back errors through syncfs
since 5.8 (to a descriptor opened before the writes), so it is used only there; elsewhere the
per-file syncs stay.

While the copy runs, the same descriptors are synced every `write_behind` seconds (write-behind):
the copy's pages then go to disk as they arrive, while the disk is otherwise idle, and the sync at
the end has only the last fraction of a second left (180 MB: 0.001-0.023 s instead of 0.09-0.12 s
in the runs of docs/benchmarks.md).
The price is that other writers on those file systems have their data written out sooner than the
kernel would have (within the interval instead of within 30 s).
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

# syncfs reports write-back errors (to descriptors opened before them) since Linux 5.8.
_ERRORS_REPORTED_SINCE = (5, 8)


def kernel_version(release: str) -> tuple[int, int] | None:
    """(major, minor) of a Linux release string such as '6.1.0-18-amd64'."""
    match = re.match(r"(\d+)\.(\d+)", release)
    return (int(match.group(1)), int(match.group(2))) if match else None


@functools.cache
def syncfs_usable() -> bool:
    """Whether syncfs exists here and reports write-back errors (Linux 5.8+)."""
    if platform.system() != "Linux":
        return False
    version = kernel_version(platform.release())
    if version is None or version < _ERRORS_REPORTED_SINCE:
        return False
    try:
        return hasattr(ctypes.CDLL(None, use_errno=True), "syncfs")
    except OSError:
        return False


def _syncfs(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"syncfs: {os.strerror(err)}")


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


class FileSystemSync:
    """Opened before a copy writes under `paths` (so that a write-back error during the copy is
    reported to it), synced after: one syncfs per file system those paths are on. With
    `write_behind` > 0 they are also synced that often from entering the context until sync()."""

    def __init__(self, paths: Iterable[Path], *, write_behind: float = 0.0) -> None:
        self._fds: dict[int, int] = {}  # st_dev -> descriptor
        self._write_behind = write_behind
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # A syncfs reports a write-back error once per descriptor: one the background saw is kept.
        self._failure: OSError | None = None
        try:
            for path in paths:
                fd = os.open(_existing_ancestor(path), os.O_RDONLY)
                dev = os.fstat(fd).st_dev
                if dev in self._fds:
                    os.close(fd)
                else:
                    self._fds[dev] = fd
        except BaseException:
            self.close()
            raise

    def _sync_all(self) -> None:
        for fd in self._fds.values():
            _syncfs(fd)

    def _behind(self) -> None:
        while not self._stopping.wait(self._write_behind):
            began = time.monotonic()
            try:
                self._sync_all()
            except OSError as exc:
                self._failure = exc
                return
            # Never more than half the time syncing: a slow disk is not kept busy by this alone.
            if self._stopping.wait(time.monotonic() - began):
                return

    def _stop_behind(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def sync(self) -> None:
        """Everything written to these file systems since opening is on disk; OSError otherwise."""
        self._stop_behind()
        if self._failure is not None:
            raise self._failure
        self._sync_all()

    def close(self) -> None:
        self._stop_behind()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> FileSystemSync:
        if self._write_behind > 0 and self._fds:
            self._thread = threading.Thread(target=self._behind, name="copy-write-behind", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
