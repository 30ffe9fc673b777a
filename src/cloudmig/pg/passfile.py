"""libpq passfiles: how pg_basebackup and primary_conninfo get a source password (never argv/env)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cloudmig.pg.files import chown_path, write_if_changed
from cloudmig.pg.runner import OsUser


def escape_field(value: str) -> str:
    """Escape one passfile field: backslash and colon take a backslash (libpq rules)."""
    if any(ch in value for ch in "\n\r\0"):
        raise ValueError("a passfile field cannot contain a newline or NUL character")
    return value.replace("\\", "\\\\").replace(":", "\\:")


def render_passfile(*, host: str, port: int, user: str, password: str) -> str:
    """One line `host:port:*:user:password`; `*` matches any database, including the physical
    replication pseudo-database."""
    fields = [escape_field(host), str(int(port)), "*", escape_field(user), escape_field(password)]
    return ":".join(fields) + "\n"


def _prepare_dir(directory: Path, owner: OsUser | None) -> None:
    expected_uid = owner.uid if owner is not None and os.geteuid() == 0 else os.geteuid()
    if not directory.exists():
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.mkdir(mode=0o700, exist_ok=True)
    st = directory.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise ValueError(f"{directory} is not a directory")
    # Only a directory of our own that is still empty may be handed over to the owner.
    if st.st_uid != expected_uid and (st.st_uid != os.geteuid() or any(directory.iterdir())):
        raise ValueError(f"{directory} belongs to uid {st.st_uid}: a passfile needs a dedicated directory")
    os.chmod(directory, 0o700)
    chown_path(directory, owner)


def write_passfile(
    path: Path, *, host: str, port: int, user: str, password: str, owner: OsUser | None
) -> None:
    """Write a 0600 passfile atomically in a 0700 directory, both owned by `owner` (the PostgreSQL OS
    user when cloudmig runs as root). The directory should be dedicated to passfiles; its missing
    ancestors are created with the default mode and must be traversable by `owner`."""
    text = render_passfile(host=host, port=port, user=user, password=password)
    _prepare_dir(path.parent, owner)
    # Rewritten before each use (the runtime dir may be a tmpfs): mostly with the same text.
    write_if_changed(path, text, user=owner, mode=0o600)


def remove_passfile(path: Path) -> None:
    path.unlink(missing_ok=True)
