"""The OS user that runs PostgreSQL when cloudmig runs as root, and file system reachability."""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Sequence
from pathlib import Path

from cloudmig.pg.runner import OsUser
from cloudmig.settings import Settings


def pg_os_user(settings: Settings) -> OsUser | None:
    """None when cloudmig does not run as root (binaries then run as the current user); otherwise
    the passwd entry of settings.pg_os_user."""
    if os.geteuid() != 0:
        return None
    name = settings.pg_os_user
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise RuntimeError(
            f"OS user {name!r} (setting pg_os_user) does not exist; PostgreSQL cannot run as root: "
            "create that user or set CLOUDMIG_PG_OS_USER to an existing non-root account"
        ) from None
    if entry.pw_uid == 0:
        raise RuntimeError(f"pg_os_user {name!r} is root; PostgreSQL refuses to run as root")
    return OsUser(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid, home=Path(entry.pw_dir))


def chown_to(path: Path, user: OsUser | None) -> None:
    """Give `path` (not following a symlink) to `user`; no-op when not root or user is None."""
    if user is not None and os.geteuid() == 0:
        os.chown(path, user.uid, user.gid, follow_symlinks=False)


def can_traverse(st: os.stat_result, user: OsUser) -> bool:
    """Whether `user` (primary group only: children run with no supplementary groups) may search a
    directory with this stat."""
    if st.st_uid == user.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == user.gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def ensure_reachable(path: Path, user: OsUser | None, *, fixable_roots: Sequence[Path] = ()) -> None:
    """Make sure `user` can reach `path`: every existing ancestor must be searchable by it.
    Ancestors at or under one of `fixable_roots` (directories cloudmig creates: the data dir, the
    runtime dir) get o+x/g+x (0711-style); any other blocking ancestor raises RuntimeError naming it.
    No-op when not root (the binaries then run as the current user)."""
    if user is None or os.geteuid() != 0:
        return
    roots = [Path(os.path.abspath(r)) for r in fixable_roots]
    target = Path(os.path.abspath(path))
    ancestors = [*reversed(target.parents)]
    if target.is_dir():
        ancestors.append(target)
    for directory in ancestors:
        try:
            st = directory.stat()
        except FileNotFoundError:
            break  # what does not exist yet will be created by cloudmig
        if can_traverse(st, user):
            continue
        if _under(directory, roots) and st.st_uid == 0:
            os.chmod(directory, stat.S_IMODE(st.st_mode) | stat.S_IXGRP | stat.S_IXOTH)
            continue
        raise RuntimeError(
            f"{directory} is not reachable by OS user {user.name}; choose a --data-dir the "
            f"{user.name} user can traverse (or make {directory} searchable: chmod o+x)"
        )
