"""Find the PostgreSQL binaries of a given major version.

A server directory needs postgres, initdb and pg_ctl of that major: the instances of a major run
their own major's server. pg_basebackup is looked up on its own: it copies servers of its own and
older majors (back to 9.1), so a newer one serves an older source, and a directory of server
binaries need not have one.

Where: the `pg_bin_dirs` setting first (each entry a bin directory, or a prefix that holds bin/),
then the distributions' locations, the `pgserver` wheel, pg_config's and PATH's directories.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from cloudmig.pg.runner import OsUser, PgCommandError, run

_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
SERVER_PROGRAMS = ("postgres", "initdb", "pg_ctl")
BASEBACKUP = "pg_basebackup"
# Debian's list of the distribution's PostgreSQL versions; the last line is its default.
_DEBIAN_SUPPORTED_VERSIONS = Path("/usr/share/postgresql-common/supported-versions")
# Per-major layouts: Debian/Ubuntu, PGDG RPMs, a common hand-made one.
_MAJOR_LAYOUTS = ("/usr/lib/postgresql/{major}/bin", "/usr/pgsql-{major}/bin", "/opt/postgresql/{major}/bin")
_MAJOR_GLOBS = (
    (Path("/usr/lib/postgresql"), "*/bin"),
    (Path("/usr"), "pgsql-*/bin"),
    (Path("/opt/postgresql"), "*/bin"),
)

_lock = threading.Lock()
_cache: dict[tuple[int, tuple[Path, ...], int | None], Path] = {}
_basebackup_cache: dict[tuple[int, tuple[Path, ...], int | None], Path] = {}
# (program path, uid it ran as) → (mtime_ns, major): `--version` runs once per binary and process.
_version_cache: dict[tuple[Path, int | None], tuple[int, int]] = {}


class PgBinariesNotFound(Exception):
    """No directory with PostgreSQL binaries of the requested major version."""


def program_major(program: Path, user: OsUser | None = None) -> int:
    """Major version of a PostgreSQL program from its `--version` (postgres allows it as root),
    run as `user` when given, which proves that user can run it. 9.6 comes back as 96, so that it
    is never confused with another 9.x."""
    try:
        mtime = program.stat().st_mtime_ns
    except OSError as exc:
        raise PgBinariesNotFound(f"{program}: {exc.strerror}") from exc
    key = (program, None if user is None else user.uid)
    with _lock:
        cached = _version_cache.get(key)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    out = run([program, "--version"], user=user, timeout=30).stdout
    match = _VERSION_RE.search(out)
    if match is None:
        raise PgBinariesNotFound(f"{program}: unexpected version output {out.strip()!r}")
    major = int(match.group(1))
    if major < 10 and match.group(2) is not None:
        major = major * 10 + int(match.group(2))
    with _lock:
        _version_cache[key] = (mtime, major)
    return major


def server_major(bin_dir: Path, user: OsUser | None = None) -> int:
    """Major version of `bin_dir/postgres` (run as `user` when given)."""
    return program_major(bin_dir / "postgres", user)


def as_bin_dir(entry: Path) -> Path:
    """A pg_bin_dirs entry is a bin directory or a prefix that holds one."""
    entry = entry.expanduser()
    return entry / "bin" if (entry / "bin").is_dir() else entry


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


def _generic_dirs(program: str) -> Iterator[Path]:
    """Places that may hold any major: the pgserver wheel, pg_config's bindir, PATH."""
    pgserver = _pgserver_bin_dir()
    if pgserver is not None:
        yield pgserver
    pg_config = _pg_config_bin_dir()
    if pg_config is not None:
        yield pg_config
    found = shutil.which(program)
    if found is not None:
        yield Path(found).resolve().parent


def candidate_dirs(major: int, extra_dirs: Sequence[Path] = ()) -> Iterator[Path]:
    """Directories that may hold the server binaries of `major`, most specific first (not
    deduplicated)."""
    yield from (as_bin_dir(d) for d in extra_dirs)
    yield from (Path(layout.format(major=major)) for layout in _MAJOR_LAYOUTS)
    yield from _generic_dirs("postgres")


def _all_major_dirs() -> Iterator[Path]:
    """The per-major layouts' directories of every major installed, newest first."""
    found: list[Path] = []
    for root, pattern in _MAJOR_GLOBS:
        if root.is_dir():
            found += [p for p in root.glob(pattern) if p.is_dir()]
    digits = re.compile(r"(\d+)")

    def key(path: Path) -> int:
        match = digits.search(path.parent.name)
        return int(match.group(1)) if match else 0

    yield from sorted(found, key=key, reverse=True)


def _unique(dirs: Iterable[Path]) -> Iterator[Path]:
    seen: set[Path] = set()
    for directory in dirs:
        if directory not in seen:
            seen.add(directory)
            yield directory


def _has_server(bin_dir: Path) -> bool:
    return all((bin_dir / name).is_file() for name in SERVER_PROGRAMS)


def find_bin_dir(major: int, extra_dirs: Sequence[Path] = (), *, user: OsUser | None = None) -> Path:
    """The first directory holding postgres/initdb/pg_ctl whose server is `major` (and that `user`
    can run, when given)."""
    key = (major, tuple(extra_dirs), None if user is None else user.uid)
    with _lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    looked: list[str] = []
    for directory in _unique(candidate_dirs(major, extra_dirs)):
        if not _has_server(directory):
            continue
        try:
            found = server_major(directory, user)
        except (PgCommandError, PgBinariesNotFound) as exc:
            looked.append(f"{directory} ({exc})")
            continue
        if found == major:
            with _lock:
                _cache[key] = directory
            return directory
        looked.append(f"{directory} (PostgreSQL {found})")
    where = "; ".join(looked) or "no candidate directory holds postgres, initdb and pg_ctl"
    raise PgBinariesNotFound(
        f"PostgreSQL {major} server binaries not found ({where}); install them or set pg_bin_dirs"
    )


def find_basebackup(min_major: int, extra_dirs: Sequence[Path] = (), *, user: OsUser | None = None) -> Path:
    """A pg_basebackup able to copy a server of `min_major` (and that `user` can run, when given):
    of that major if there is one, else of the nearest newer major (older ones refuse newer
    servers). Returns the program's path."""
    key = (min_major, tuple(extra_dirs), None if user is None else user.uid)
    with _lock:
        cached = _basebackup_cache.get(key)
    if cached is not None:
        return cached
    dirs = _unique(
        [
            *candidate_dirs(min_major, extra_dirs),
            *_all_major_dirs(),
            *_generic_dirs(BASEBACKUP),
        ]
    )
    best: tuple[int, Path] | None = None
    looked: list[str] = []
    for directory in dirs:
        program = directory / BASEBACKUP
        if not program.is_file():
            continue
        try:
            found = program_major(program, user)
        except (PgCommandError, PgBinariesNotFound) as exc:
            looked.append(f"{program} ({exc})")
            continue
        if found < min_major:
            looked.append(f"{program} (PostgreSQL {found})")
            continue
        if best is None or found < best[0]:
            best = (found, program)
        if found == min_major:
            break
    if best is None:
        where = "; ".join(looked) or "none found"
        raise PgBinariesNotFound(
            f"no pg_basebackup of PostgreSQL {min_major} or newer ({where}); install one or set pg_bin_dirs"
        )
    with _lock:
        _basebackup_cache[key] = best[1]
    return best[1]


def distribution_major() -> int | None:
    """The distribution's own PostgreSQL major (Debian's default version, e.g. 15 on Debian 12 and
    17 on Debian 13), else the newest major installed in a per-major layout, else None."""
    if _DEBIAN_SUPPORTED_VERSIONS.is_file():
        try:
            out = run(["/bin/sh", _DEBIAN_SUPPORTED_VERSIONS], user=None, timeout=10).stdout
        except PgCommandError:
            out = ""
        versions = [line.strip() for line in out.splitlines() if line.strip().isdigit()]
        if versions:
            return int(versions[-1])
    for directory in _all_major_dirs():
        if _has_server(directory):
            match = re.search(r"(\d+)", directory.parent.name)
            if match:
                return int(match.group(1))
    return None
