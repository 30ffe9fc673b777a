"""Files of PostgreSQL clusters and cloudmig's runtime dir: written atomically (temporary file,
fsync, rename, fsync of the directory) and owned by the PostgreSQL OS user when cloudmig is root."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cloudmig.pg.runner import OsUser


def chown_path(path: Path, user: OsUser | None) -> None:
    if user is not None and os.geteuid() == 0:
        os.chown(path, user.uid, user.gid, follow_symlinks=False)


def make_dir(path: Path, *, user: OsUser | None, mode: int = 0o700) -> None:
    """Create `path` (and missing parents) and give it `mode` and the owner `user`."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    chown_path(path, user)


def atomic_write(path: Path, text: str, *, user: OsUser | None, mode: int = 0o600) -> None:
    """Write `text` to `path` atomically (same-directory temporary file, fsync, rename, fsync dir)."""
    data = text.encode("utf-8", errors="surrogateescape")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        if user is not None and os.geteuid() == 0:
            os.fchown(fd, user.uid, user.gid)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_if_changed(path: Path, text: str, *, user: OsUser | None, mode: int | None = None) -> None:
    """atomic_write unless `path` already holds `text` (no write, no fsync: each costs a journal
    commit, tens of milliseconds on a disk still busy with a copy). `mode`: the file's mode, else
    an existing file keeps its own and a new one gets 0600."""
    try:
        st = path.stat()
        if path.read_text(encoding="utf-8", errors="surrogateescape") == text:
            chown_path(path, user)
            if mode is not None and st.st_mode & 0o777 != mode:
                os.chmod(path, mode)
            return
        kept = st.st_mode & 0o777
    except FileNotFoundError:
        kept = 0o600
    atomic_write(path, text, user=user, mode=kept if mode is None else mode)


def tree_bytes(path: Path, *, lengths: bool = False, leave_out: str | None = None) -> int:
    """Bytes the files under `path` occupy on disk (their blocks), or their `lengths`; `leave_out`:
    a directory directly under `path` not counted. A file removed while walking (a WAL segment
    recycled) is skipped; a missing `path` counts 0."""
    total = 0
    for root, dirs, files in os.walk(path):
        if leave_out is not None and root == os.fspath(path) and leave_out in dirs:
            dirs.remove(leave_out)
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            total += st.st_size if lengths else st.st_blocks * 512
    return total
