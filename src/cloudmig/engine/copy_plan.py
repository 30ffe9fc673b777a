"""How a full copy is compressed: the decision and its reason (pure functions, no I/O).

The copy's speed in uncompressed bytes per second is about min(pipeline, link x ratio) with
compression and min(disk, link) without, where the pipeline is the source's one compressor thread,
cloudmig's relay and pg_basebackup's decompression. Measured on a 2-vCPU machine over a 1 Gbit/s
link (docs/benchmarks.md), zstd level 1 moved 128-150 MB/s of data and lz4 94-150 MB/s: lz4's
faster compressor does not make up for its lower ratio (1.9x against 3.0x on mixed data, 8x
against 16x on pgbench's), which the rest of the pipeline carries. So:

- a link faster than FAST_LINK is better used uncompressed (the pipeline would be the limit);
- below it zstd level 1, and below ZSTD3_LINK zstd level 3 squeezes a little more;
- lz4 when the source or pg_basebackup lacks zstd.

The link speed is measured before the copy and capped by the budgets that apply to it. How well the
data compresses is measured on the copy itself: when its first seconds show that the compressed copy
moves fewer uncompressed bytes per second than the link alone would carry (data that does not
compress, or a compressor slower than the link), an automatic choice is revised once to an
uncompressed copy (`revise`).
"""

from __future__ import annotations

from dataclasses import dataclass

from cloudmig.domain.compression import NONE, CompressionMode
from cloudmig.pg.compression import ServerSupport

MB = 1_000_000
FAST_LINK = 150 * MB
ZSTD3_LINK = 6 * MB

# The first window of a compressed copy: long enough for several progress reports.
WINDOW_SECONDS = 3.0
WINDOW_MIN_BYTES = 8 * 1024 * 1024
# Revise only when the uncompressed copy would clearly be faster, the restart included.
REVISE_BELOW_SHARE = 0.75
RESTART_COST_SECONDS = 1.5


@dataclass(frozen=True)
class SourceMeasurement:
    """What the decision needs from the source: its compression support and the link's rate (None
    when not measured), for the requested mode and local address it was made for."""

    server: ServerSupport
    link: float | None
    made_for: tuple[str, str | None]


@dataclass(frozen=True)
class CopyPlan:
    mode: CompressionMode
    requested: CompressionMode
    reason: str
    link_bytes_per_second: float | None = None
    fallback: str = ""  # why a requested compression could not be used ("" when it could)

    def detail(self) -> str:
        how = "uncompressed" if not self.mode.compressed else f"with server-side {self.mode}"
        text = f"Copy {how} (CopyCompression {self.requested}): {self.reason}"
        return text


def mb(rate: float) -> str:
    return f"{rate / MB:.1f} MB/s"


def effective_link(link: float | None, caps: dict[str, float]) -> tuple[float | None, str]:
    """The lowest of the measured link and the rate caps that apply to the wire, with its name."""
    named = [(v, k) for k, v in caps.items() if v > 0]
    if link is not None:
        named.append((link, "measured link"))
    if not named:
        return None, ""
    value, name = min(named)
    return value, name


def unsupported(requested: CompressionMode, server: ServerSupport, client: frozenset[str]) -> str:
    """Why `requested` (a compressed mode) cannot be used with this source and client, or ""."""
    if not server.server_compression:
        return f"the source runs PostgreSQL {server.major}; server-side compression needs 15 or later"
    if requested.algorithm not in server.algorithms:
        return f"the source's PostgreSQL was built without {requested.algorithm}"
    if requested.algorithm not in client:
        return f"cloudmig's pg_basebackup was built without {requested.algorithm}"
    return ""


def _auto_mode(rate: float, server: ServerSupport, client: frozenset[str]) -> tuple[CompressionMode, str]:
    if rate >= FAST_LINK:
        return NONE, "faster than one server compressor thread; compression would slow the copy"
    if rate < ZSTD3_LINK:
        wanted, why = CompressionMode("zstd", 3), "slow enough for zstd level 3's higher ratio"
    else:
        wanted, why = CompressionMode("zstd", 1), "zstd level 1 moves the most data on links below 150 MB/s"
    if not unsupported(wanted, server, client):
        return wanted, why
    other = CompressionMode("lz4")
    if not unsupported(other, server, client):
        return other, f"{why}, but {unsupported(wanted, server, client)}"
    return NONE, unsupported(wanted, server, client)


def decide(
    requested: CompressionMode,
    server: ServerSupport,
    client: frozenset[str],
    link: float | None,
    caps: dict[str, float] | None = None,
    *,
    local: str | None = None,
) -> CopyPlan:
    """The mode for this copy. `link`: measured bytes/s (None when not measured); `caps`: rate
    limits on the wire in bytes/s by name (a per-task max rate, the host budget's share); `local`:
    the source's address when it is on this machine (then there is no link to spare)."""
    rate, rate_name = effective_link(link, caps or {})
    if not requested.auto:
        if not requested.compressed:
            return CopyPlan(NONE, requested, "as requested", rate)
        why = unsupported(requested, server, client)
        if why:
            return CopyPlan(NONE, requested, f"{why}; copying uncompressed", rate, fallback=why)
        return CopyPlan(requested, requested, "as requested", rate)
    if not server.server_compression:
        why = unsupported(CompressionMode("zstd", 1), server, client)
        return CopyPlan(NONE, requested, f"{why}; copying uncompressed", rate, fallback=why)
    if not (set(server.algorithms) & set(client)):
        why = unsupported(CompressionMode("zstd", 1), server, client)
        return CopyPlan(NONE, requested, f"{why} and lz4; copying uncompressed", rate, fallback=why)
    if local and not caps:
        return CopyPlan(
            NONE, requested, f"the source is on this machine ({local}): no network link to spare", None
        )
    if rate is None:
        return CopyPlan(NONE, requested, "the link could not be measured; copying uncompressed", rate)
    mode, why = _auto_mode(rate, server, client)
    return CopyPlan(mode, requested, f"{rate_name} {mb(rate)}: {why}", rate)


@dataclass(frozen=True)
class Window:
    """What the first seconds of a compressed copy showed."""

    seconds: float
    uncompressed: int  # bytes that reached this side uncompressed (written into the copy directory)
    wire: int  # bytes received from the source
    total: int  # the copy's estimated size, uncompressed

    @property
    def ratio(self) -> float:
        return self.uncompressed / self.wire if self.wire else 1.0

    @property
    def rate(self) -> float:
        return self.uncompressed / self.seconds if self.seconds > 0 else 0.0


def window_complete(w: Window) -> bool:
    return w.seconds >= WINDOW_SECONDS and w.uncompressed >= WINDOW_MIN_BYTES


def revise(plan: CopyPlan, w: Window) -> CopyPlan | None:
    """An uncompressed plan when the compressed copy runs clearly slower than the link would carry
    it uncompressed, restarting included; None to keep going. Only an automatic choice is revised."""
    link = plan.link_bytes_per_second
    if not plan.requested.auto or not plan.mode.compressed or not link or w.rate <= 0:
        return None
    if w.rate >= REVISE_BELOW_SHARE * link:
        return None
    remaining = max(w.total - w.uncompressed, 0)
    keep = remaining / w.rate
    restart = w.total / link + RESTART_COST_SECONDS
    if restart >= keep:
        return None
    reason = (
        f"the first {w.seconds:.0f} s moved {mb(w.rate)} of data (ratio {w.ratio:.2f}), less than the "
        f"{mb(link)} the link carries uncompressed; restarting uncompressed"
    )
    return CopyPlan(NONE, plan.requested, reason, link)
