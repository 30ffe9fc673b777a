"""`CopyCompression`: how a full copy is compressed on the wire (auto, none, lz4, zstd[:level]).
Pure data; what a server supports and the pg_basebackup argument are in pg/compression.py."""

from __future__ import annotations

import re
from dataclasses import dataclass

ALGORITHMS = ("lz4", "zstd")
ZSTD_LEVELS = range(1, 23)
# zstd level used when none is asked for ("zstd"): fast enough to keep up with most links.
DEFAULT_ZSTD_LEVEL = 1

_MODE_RE = re.compile(r"^(auto|none|lz4|zstd)(?::(?:level=)?(\d{1,2}))?$")


class InvalidCompressionMode(ValueError):
    pass


@dataclass(frozen=True)
class CompressionMode:
    """What `CopyCompression` asks for: auto (cloudmig decides), none, lz4 or zstd with a level."""

    algorithm: str  # "auto", "none", "lz4", "zstd"
    level: int | None = None

    @property
    def auto(self) -> bool:
        return self.algorithm == "auto"

    @property
    def compressed(self) -> bool:
        return self.algorithm in ALGORITHMS

    def __str__(self) -> str:
        return f"zstd:{self.level}" if self.algorithm == "zstd" and self.level else self.algorithm


NONE = CompressionMode("none")
AUTO = CompressionMode("auto")


def parse_mode(text: str) -> CompressionMode:
    """auto, none, lz4, zstd, zstd:N or zstd:level=N (N 1-22), any case. Raises InvalidCompressionMode."""
    m = _MODE_RE.match(text.strip().lower())
    if m is None:
        raise InvalidCompressionMode(
            f"{text!r} is not a compression mode: use auto, none, lz4, zstd or zstd:LEVEL (1-22)"
        )
    algorithm, level = m.group(1), m.group(2)
    if level is not None:
        if algorithm != "zstd":
            raise InvalidCompressionMode(f"{text!r}: only zstd takes a level")
        if int(level) not in ZSTD_LEVELS:
            raise InvalidCompressionMode(f"{text!r}: the zstd level must be 1 to 22")
        return CompressionMode("zstd", int(level))
    if algorithm == "zstd":
        return CompressionMode("zstd", DEFAULT_ZSTD_LEVEL)
    return CompressionMode(algorithm)
