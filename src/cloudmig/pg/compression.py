"""Server-side compression of a base backup: what a server and a pg_basebackup binary support, and
the pg_basebackup argument (the modes themselves are domain/compression.py).

PostgreSQL 15+ compresses a base backup on the server (`--compress=server-lz4|server-zstd[:level=N]`)
and pg_basebackup unpacks it in plain format, so what crosses the network is compressed while the
target's files are the same. Both ends need the algorithm: the server built with it (its
`wal_compression` setting lists exactly the algorithms it was built with) and the client binary
linked with the library to decompress.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from cloudmig.domain.compression import ALGORITHMS, DEFAULT_ZSTD_LEVEL, CompressionMode

MIN_SERVER_VERSION_NUM = 150000


def pg_basebackup_arg(mode: CompressionMode) -> str | None:
    """The --compress argument, or None for an uncompressed copy."""
    if mode.algorithm == "lz4":
        return "--compress=server-lz4"
    if mode.algorithm == "zstd":
        return f"--compress=server-zstd:level={mode.level or DEFAULT_ZSTD_LEVEL}"
    return None


@dataclass(frozen=True)
class ServerSupport:
    """What the source offers: its version and the compression algorithms it was built with."""

    version_num: int
    algorithms: frozenset[str]

    @property
    def major(self) -> int:
        return self.version_num // 10000

    @property
    def server_compression(self) -> bool:
        return self.version_num >= MIN_SERVER_VERSION_NUM


def server_support(conn: psycopg.Connection[Any]) -> ServerSupport:
    """Version and algorithms (lz4, zstd) of a source; any role may read pg_settings."""
    version = int(conn.execute("SELECT current_setting('server_version_num')").fetchone()[0])  # type: ignore[index]
    row = conn.execute("SELECT enumvals FROM pg_settings WHERE name = 'wal_compression'").fetchone()
    values = set(row[0] or []) if row is not None else set()
    return ServerSupport(version, frozenset(a for a in ALGORITHMS if a in values))


def client_algorithms(bin_dir: Path) -> frozenset[str]:
    """Algorithms the pg_basebackup in `bin_dir` can decompress (those it links: liblz4, libzstd).
    pg_basebackup finds out only after the backup started on the source, so cloudmig looks first."""
    try:
        binary = (bin_dir / "pg_basebackup").read_bytes()
    except OSError:
        return frozenset()
    return frozenset(a for a in ALGORITHMS if f"lib{a}.so".encode() in binary)
