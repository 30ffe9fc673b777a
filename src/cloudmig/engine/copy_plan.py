"""How a full copy is compressed: the decision and its reason (pure functions, no I/O).

The copy's speed in uncompressed bytes per second is about min(pipeline, link x ratio) with
compression and min(disk, link) without, where the pipeline is the source's one compressor thread,
cloudmig's relay and pg_basebackup's decompression. zstd level 1 compresses 1.5 (mixed data) to 1.9
(pgbench's) times better than lz4 but costs more CPU at both ends. Measured on a 2-vCPU machine
(docs/benchmarks.md) over a 1 Gbit/s link, lz4's wire ran near the link's rate with mixed data
(112 MB in about a second), while zstd level 1's pipeline kept ahead of the link at its ratio. In
the nine full runs with tables from 2026-12-06 21:57 to 2026-12-07 16:38 (the first with the
benchmark's data vacuumed and memory equally warm for every method) zstd level 1 was within 7 % of
the better mode in all 18 cases, and lz4 was 12-17 % behind zstd level 1 in 3 of them. So:

- a link faster than FAST_LINK is better used uncompressed (the pipeline would be the limit). The
  boundary sits well above 1 Gbit/s (125 MB/s), a common link, whose short probe read 114-135 MB/s
  in 43 of the 44 copies of two full benchmark runs and once 150 MB/s (a shaper's burst); between
  150 and 200 MB/s lz4's pipeline and the bare link move about as much;
- from LZ4_LINK up, lz4: a link that fast is not the limit even at lz4's ratio, and lz4 costs the
  least CPU;
- below it zstd level 1, whose ratio the link makes worth its CPU; below ZSTD3_LINK zstd level 3.
- Where an algorithm is missing on either side, the other one.

The link speed is measured before the copy and capped by the budgets that apply to it. How the copy
runs is measured on the copy itself: when its first seconds show that an automatic choice is clearly
wrong, the copy restarts once (`revise`), in the mode the window says is fastest -

- uncompressed, when it moves fewer uncompressed bytes per second than the link alone would carry
  (data that does not compress, or a compressor slower than the link);
- with zstd level 1, when an lz4 copy's wire runs at the link's rate (a fast source CPU: the link
  is the limit after all, and zstd's ratio moves more through it);
- with lz4, when a zstd level 1 copy's wire runs well below the link's rate (a slow source CPU:
  its compressor is the limit, and lz4's is about twice as fast).
"""

from __future__ import annotations

from dataclasses import dataclass

from cloudmig.domain.compression import NONE, CompressionMode
from cloudmig.pg.compression import ServerSupport

MB = 1_000_000
FAST_LINK = 200 * MB
# Above the 114-150 MB/s a 1 Gbit/s link's probe reads: there lz4's wire runs at the link's rate with
# mixed data (ratio about 1.9) while zstd level 1's pipeline keeps ahead of it (ratio about 2.9).
LZ4_LINK = 160 * MB
ZSTD3_LINK = 6 * MB

# The first window of a compressed copy: long enough for several progress reports.
WINDOW_SECONDS = 3.0
WINDOW_MIN_BYTES = 8 * 1024 * 1024
# Revise only when the uncompressed copy would clearly be faster, the restart included.
REVISE_BELOW_SHARE = 0.75
RESTART_COST_SECONDS = 1.5
# A wire at this share of the link's rate has the link as its limit.
LINK_BOUND_SHARE = 0.85
# What zstd level 1 is counted on to move over a link that holds lz4 back, in lz4's data rate:
# less than its 1.5-1.9x ratio, as its compressor may not keep up with all of that.
ZSTD_GAIN_OVER_LZ4 = 1.3
STRONGER = CompressionMode("zstd", 1)
# A wire below this share of the link's rate has the compressor, not the link, as its limit.
CPU_BOUND_SHARE = 0.6
# What lz4 is counted on to move where zstd level 1's compressor is the limit: its compressor is
# 2-3x as fast, its ratio 1.5-1.9x lower (the cautious ends of both).
LZ4_SPEED_OVER_ZSTD = 2.0
ZSTD_RATIO_OVER_LZ4 = 1.9
LIGHTER = CompressionMode("lz4")


@dataclass(frozen=True)
class AutoBounds:
    """Where an automatic choice changes mode, in bytes/s of the link: uncompressed from
    `none_from`, lz4 from `lz4_from`, zstd level 1 below it (level 3 below ZSTD3_LINK). Settings
    move them for source CPUs unlike the benchmark's (`copy_auto_none_from_mb`, `..._lz4_from_mb`)."""

    none_from: float = FAST_LINK
    lz4_from: float = LZ4_LINK

    @classmethod
    def from_mb(cls, none_from: float, lz4_from: float) -> AutoBounds:
        return cls(none_from * MB, lz4_from * MB)


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
    # The mode to restart with if the link turns out to be the limit (auto's lz4 when zstd is usable).
    if_link_bound: CompressionMode | None = None
    # The mode to restart with if the compressor turns out to be the limit (auto's zstd level 1 when
    # lz4 is usable).
    if_cpu_bound: CompressionMode | None = None

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


def _auto_mode(
    rate: float, server: ServerSupport, client: frozenset[str], bounds: AutoBounds
) -> tuple[CompressionMode, str]:
    if rate >= bounds.none_from:
        return NONE, "faster than one server compressor thread; compression would slow the copy"
    if rate >= bounds.lz4_from:
        wanted = LIGHTER
        why = (
            f"a link of {mb(bounds.lz4_from)} or more is not the limit even at lz4's ratio, and lz4 "
            "costs the least CPU"
        )
    elif rate < ZSTD3_LINK:
        wanted, why = CompressionMode("zstd", 3), "slow enough for zstd level 3's higher ratio"
    else:
        wanted = STRONGER
        why = f"zstd level 1's ratio moves the most data on links below {mb(bounds.lz4_from)}"
    if not unsupported(wanted, server, client):
        return wanted, why
    other = STRONGER if wanted.algorithm == "lz4" else LIGHTER
    if not unsupported(other, server, client):
        return other, f"{why}, but {unsupported(wanted, server, client)}"
    return NONE, unsupported(wanted, server, client)


def needs_measurement(requested: CompressionMode, local: str | None, caps: dict[str, float]) -> bool:
    """Whether the decision needs the source's support and link: not for an automatic choice with
    the source on this machine and no budget (it copies uncompressed whatever the source has)."""
    return not (requested.auto and local and not caps)


def on_this_machine(requested: CompressionMode, local: str) -> CopyPlan:
    """An automatic choice for a source on this machine without a budget: nothing to spare."""
    return CopyPlan(
        NONE, requested, f"the source is on this machine ({local}): no network link to spare", None
    )


def decide(
    requested: CompressionMode,
    server: ServerSupport,
    client: frozenset[str],
    link: float | None,
    caps: dict[str, float] | None = None,
    *,
    local: str | None = None,
    bounds: AutoBounds = AutoBounds(),
) -> CopyPlan:
    """The mode for this copy. `link`: measured bytes/s (None when not measured); `caps`: rate
    limits on the wire in bytes/s by name (a per-task max rate, the host budget's share); `local`:
    the source's address when it is on this machine (then there is no link to spare); `bounds`:
    where auto changes mode."""
    rate, rate_name = effective_link(link, caps or {})
    if not requested.auto:
        if not requested.compressed:
            return CopyPlan(NONE, requested, "as requested", rate)
        why = unsupported(requested, server, client)
        if why:
            return CopyPlan(NONE, requested, f"{why}; copying uncompressed", rate, fallback=why)
        return CopyPlan(requested, requested, "as requested", rate)
    if local and not caps:
        return on_this_machine(requested, local)
    if not server.server_compression:
        why = unsupported(CompressionMode("zstd", 1), server, client)
        return CopyPlan(NONE, requested, f"{why}; copying uncompressed", rate, fallback=why)
    if not (set(server.algorithms) & set(client)):
        why = unsupported(CompressionMode("zstd", 1), server, client)
        return CopyPlan(NONE, requested, f"{why} and lz4; copying uncompressed", rate, fallback=why)
    if rate is None:
        return CopyPlan(NONE, requested, "the link could not be measured; copying uncompressed", rate)
    mode, why = _auto_mode(rate, server, client, bounds)
    usable = not unsupported(STRONGER if mode == LIGHTER else LIGHTER, server, client)
    return CopyPlan(
        mode,
        requested,
        f"{rate_name} {mb(rate)}: {why}",
        rate,
        if_link_bound=STRONGER if mode == LIGHTER and usable else None,
        if_cpu_bound=LIGHTER if mode == STRONGER and usable else None,
    )


@dataclass(frozen=True)
class Window:
    """What the first seconds of a compressed copy showed."""

    seconds: float
    uncompressed: int  # bytes that reached this side uncompressed (written into the copy directory)
    wire: int  # bytes received from the source
    total: int  # the copy's estimated size, uncompressed
    # The two counts when the window opened: the rates are of what came within it.
    opened_uncompressed: int = 0
    opened_wire: int = 0

    @property
    def ratio(self) -> float:
        return self.uncompressed / self.wire if self.wire else 1.0

    @property
    def rate(self) -> float:
        return (self.uncompressed - self.opened_uncompressed) / self.seconds if self.seconds > 0 else 0.0

    @property
    def wire_rate(self) -> float:
        return (self.wire - self.opened_wire) / self.seconds if self.seconds > 0 else 0.0


def window_complete(w: Window) -> bool:
    return w.seconds >= WINDOW_SECONDS and w.uncompressed >= WINDOW_MIN_BYTES


def revise(plan: CopyPlan, w: Window) -> CopyPlan | None:
    """The plan to restart the copy with when its first seconds show the automatic choice clearly
    wrong, the restart included; None to keep going. Only an automatic choice is revised, to the
    fastest of what the window allows: an uncompressed copy when the compressed one moves less data
    than the link would carry alone, `plan.if_link_bound` when the wire runs at the link's rate,
    `plan.if_cpu_bound` when it runs well below it."""
    link = plan.link_bytes_per_second
    if not plan.requested.auto or not plan.mode.compressed or not link or w.rate <= 0:
        return None
    keep = max(w.total - w.uncompressed, 0) / w.rate
    seen = f"the first {w.seconds:.0f} s"
    options: list[tuple[float, CopyPlan]] = []  # (seconds the whole copy would take again, plan)
    if w.rate < REVISE_BELOW_SHARE * link:
        reason = (
            f"{seen} moved {mb(w.rate)} of data (ratio {w.ratio:.2f}), less than the "
            f"{mb(link)} the link carries uncompressed; restarting uncompressed"
        )
        options.append((w.total / link, CopyPlan(NONE, plan.requested, reason, link)))
    stronger = plan.if_link_bound
    if stronger is not None and w.wire_rate >= LINK_BOUND_SHARE * link:
        reason = (
            f"{seen} sent {mb(w.wire_rate)} on the wire, the link's "
            f"{mb(link)}, with {plan.mode}'s ratio {w.ratio:.2f}: the link is the limit; "
            f"restarting with {stronger}'s higher ratio"
        )
        options.append(
            (w.total / (w.rate * ZSTD_GAIN_OVER_LZ4), CopyPlan(stronger, plan.requested, reason, link))
        )
    lighter = plan.if_cpu_bound
    if lighter is not None and w.wire_rate < CPU_BOUND_SHARE * link:
        lighter_rate = min(w.rate * LZ4_SPEED_OVER_ZSTD, link * w.ratio / ZSTD_RATIO_OVER_LZ4)
        reason = (
            f"{seen} sent {mb(w.wire_rate)} on the wire, well below the link's {mb(link)}, "
            f"with {plan.mode}'s ratio {w.ratio:.2f}: its compressor is the limit; "
            f"restarting with {lighter}'s faster one"
        )
        options.append((w.total / lighter_rate, CopyPlan(lighter, plan.requested, reason, link)))
    if not options:
        return None
    seconds, revised = min(options, key=lambda o: o[0])
    return revised if seconds + RESTART_COST_SECONDS < keep else None
