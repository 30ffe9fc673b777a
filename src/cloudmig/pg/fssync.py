"""Making a fresh copy durable with one syncfs(2) per file system instead of an fsync per file.

pg_basebackup syncs every file and directory it wrote one by one, and a server started on a copy
does the same again (its pg_control says it was running). On ext4 each of those fsyncs costs a
journal commit or a cache flush: for a 180 MB cluster, 0.13 s after the copy and 0.04 s at the
standby's start, against 0.09 s for one syncfs. Linux reports write-back errors through syncfs
since 5.8 (to a descriptor opened before the writes), so it is used only there; elsewhere the
per-file syncs stay.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import re
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
    reported to it), synced once after: one syncfs per file system those paths are on."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self._fds: dict[int, int] = {}  # st_dev -> descriptor
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

    def sync(self) -> None:
        """Everything written to these file systems since opening is on disk; OSError otherwise."""
        for fd in self._fds.values():
            _syncfs(fd)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> FileSystemSync:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
