"""Find the PostgreSQL binaries of a given major version."""

from __future__ import annotations

import importlib.util
import re
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from cloudmig.pg.runner import PgCommandError, run

_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
_REQUIRED = ("postgres", "initdb", "pg_ctl", "pg_basebackup")
_cache: dict[tuple[int, tuple[Path, ...]], Path] = {}
_lock = threading.Lock()


class PgBinariesNotFound(Exception):
    """No directory with PostgreSQL server binaries of the requested major version."""


def server_major(bin_dir: Path) -> int:
    """Major version of `bin_dir/postgres`, from `postgres --version` (allowed as root)."""
    out = run([bin_dir / "postgres", "--version"], user=None, timeout=30).stdout
    match = _VERSION_RE.search(out)
    if match is None:
        raise PgBinariesNotFound(f"{bin_dir}/postgres: unexpected version output {out.strip()!r}")
    major = int(match.group(1))
    if major < 10 and match.group(2) is not None:  # 9.6 → 96, to never confuse it with 9.x siblings
        major = major * 10 + int(match.group(2))
    return major


def _pgserver_bin_dir() -> Path | None:
    # The `pgserver` wheel bundles PostgreSQL (16) under pgserver/pginstall/bin; optional.
    try:
        spec = importlib.util.find_spec("pgserver")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "pginstall" / "bin"
        if candidate.is_dir():
            return candidate
    return None


def _pg_config_bin_dir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    try:
        out = run([pg_config, "--bindir"], user=None, timeout=10).stdout.strip()
    except PgCommandError:
        return None
    return Path(out) if out else None


def candidate_dirs(major: int, extra_dirs: Sequence[Path] = ()) -> Iterator[Path]:
    """Directories that may hold the binaries, most specific first (not deduplicated)."""
    yield from extra_dirs
    yield Path(f"/usr/lib/postgresql/{major}/bin")  # Debian, Ubuntu
    yield Path(f"/usr/pgsql-{major}/bin")  # PGDG RPMs
    yield Path(f"/opt/postgresql/{major}/bin")
    pgserver = _pgserver_bin_dir()
    if pgserver is not None:
        yield pgserver
    pg_config = _pg_config_bin_dir()
    if pg_config is not None:
        yield pg_config
    postgres = shutil.which("postgres")
    if postgres is not None:
        yield Path(postgres).resolve().parent


def _complete(bin_dir: Path) -> bool:
    return all((bin_dir / name).is_file() for name in _REQUIRED)


def find_bin_dir(major: int, extra_dirs: Sequence[Path] = ()) -> Path:
    """The first directory holding initdb/pg_ctl/postgres/pg_basebackup whose server is `major`."""
    key = (major, tuple(extra_dirs))
    with _lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    seen: set[Path] = set()
    looked: list[str] = []
    for directory in candidate_dirs(major, extra_dirs):
        directory = directory.expanduser()
        if directory in seen:
            continue
        seen.add(directory)
        if not _complete(directory):
            continue
        try:
            found = server_major(directory)
        except (PgCommandError, PgBinariesNotFound) as exc:
            looked.append(f"{directory} ({exc})")
            continue
        if found == major:
            with _lock:
                _cache[key] = directory
            return directory
        looked.append(f"{directory} (PostgreSQL {found})")
    where = "; ".join(looked) or "no candidate directory holds the server binaries"
    raise PgBinariesNotFound(
        f"PostgreSQL {major} server binaries not found ({where}); install them or set pg_bin_dirs"
    )
