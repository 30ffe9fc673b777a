"""CopyCompression parsing, the compression decision and the budget's token bucket (issue 13)."""

from __future__ import annotations

import pytest

from cloudmig.domain.compression import CompressionMode, InvalidCompressionMode, parse_mode
from cloudmig.engine import copy_plan
from cloudmig.engine.bandwidth import CopyPacer, TokenBucket
from cloudmig.pg.basebackup import SourceEndpoint, basebackup_argv
from cloudmig.pg.compression import ServerSupport, pg_basebackup_arg

BOTH = frozenset({"lz4", "zstd"})
PG15 = ServerSupport(150004, BOTH)
MB = 1_000_000


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("auto", "auto"),
        ("NONE", "none"),
        ("lz4", "lz4"),
        ("zstd", "zstd:1"),
        ("zstd:9", "zstd:9"),
        ("zstd:level=22", "zstd:22"),
        (" Zstd:3 ", "zstd:3"),
    ],
)
def test_modes(text: str, mode: str) -> None:
    assert str(parse_mode(text)) == mode


@pytest.mark.parametrize(
    "text", ["", "gzip", "zstd:0", "zstd:23", "lz4:1", "none:1", "zstd:-1", "zstd:3,workers=2"]
)
def test_bad_modes(text: str) -> None:
    with pytest.raises(InvalidCompressionMode):
        parse_mode(text)


def test_pg_basebackup_argument() -> None:
    assert pg_basebackup_arg(parse_mode("lz4")) == "--compress=server-lz4"
    assert pg_basebackup_arg(parse_mode("zstd:4")) == "--compress=server-zstd:level=4"
    assert pg_basebackup_arg(parse_mode("none")) is None


def test_argv_through_a_relay_keeps_the_source_name() -> None:
    from pathlib import Path

    argv = basebackup_argv(
        Path("/b"),
        Path("/t"),
        SourceEndpoint("db.example", 5432, "u"),
        "slot",
        compression=parse_mode("zstd:2"),
        relay_host="127.70.1.2",
    )
    assert argv[argv.index("-d") + 1] == "host=db.example hostaddr=127.70.1.2"
    assert "-h" not in argv and "--compress=server-zstd:level=2" in argv


@pytest.mark.parametrize(
    ("link", "mode"),
    [
        (500 * MB, "none"),
        (200 * MB, "none"),
        (160 * MB, "lz4"),
        (150 * MB, "zstd:1"),  # a 1 Gbit/s link whose probe read its shaper's burst
        (120 * MB, "zstd:1"),
        (60 * MB, "zstd:1"),
        (12 * MB, "zstd:1"),
        (2 * MB, "zstd:3"),
    ],
)
def test_auto_by_link(link: float, mode: str) -> None:
    plan = copy_plan.decide(parse_mode("auto"), PG15, BOTH, link)
    assert str(plan.mode) == mode
    assert plan.reason.startswith("measured link")
    # lz4 has a stronger mode to move to should the link turn out to hold it back, zstd level 1 a
    # lighter one should its compressor.
    assert str(plan.if_link_bound) == ("zstd:1" if mode == "lz4" else "None")
    assert str(plan.if_cpu_bound) == ("lz4" if mode == "zstd:1" else "None")


def test_settings_move_the_boundaries_of_auto() -> None:
    """A source CPU unlike the benchmark's: the operator moves where auto changes mode."""
    from pydantic import ValidationError

    from cloudmig.settings import Settings

    s = Settings(copy_auto_none_from_mb=400, copy_auto_lz4_from_mb=2)
    bounds = copy_plan.AutoBounds.from_mb(s.copy_auto_none_from_mb, s.copy_auto_lz4_from_mb)
    auto = parse_mode("auto")
    assert str(copy_plan.decide(auto, PG15, BOTH, 300 * MB, bounds=bounds).mode) == "lz4"
    assert str(copy_plan.decide(auto, PG15, BOTH, 400 * MB, bounds=bounds).mode) == "none"
    small = copy_plan.decide(auto, PG15, BOTH, 3 * MB, bounds=bounds)
    assert (str(small.mode), str(small.if_link_bound), small.if_cpu_bound) == ("lz4", "zstd:1", None)
    assert "a link of 2.0 MB/s or more" in small.reason, small.reason
    assert str(copy_plan.decide(auto, PG15, BOTH, 1.9 * MB, bounds=bounds).mode) == "zstd:3"
    mid = copy_plan.AutoBounds.from_mb(200, 20)
    assert "below 20.0 MB/s" in copy_plan.decide(auto, PG15, BOTH, 19 * MB, bounds=mid).reason
    with pytest.raises(ValidationError, match="must not be above copy_auto_none_from_mb"):
        Settings(copy_auto_none_from_mb=50, copy_auto_lz4_from_mb=60)
    assert Settings().copy_auto_lz4_from_mb * MB == copy_plan.LZ4_LINK
    with pytest.raises(ValidationError):
        Settings(copy_auto_lz4_from_mb=0)


def test_a_source_on_this_machine_is_not_compressed() -> None:
    plan = copy_plan.decide(parse_mode("auto"), PG15, BOTH, None, local="127.0.0.1")
    assert (str(plan.mode), plan.reason) == (
        "none",
        "the source is on this machine (127.0.0.1): no network link to spare",
    )
    # Whatever the source supports: without a link to spare, its support does not matter.
    older = copy_plan.decide(parse_mode("auto"), ServerSupport(140010, frozenset()), BOTH, None, local="::1")
    assert (str(older.mode), older.fallback) == ("none", "")
    assert older.reason == "the source is on this machine (::1): no network link to spare"
    # A budget still makes the link narrow, wherever the source is.
    capped = copy_plan.decide(
        parse_mode("auto"), PG15, BOTH, 300 * MB, {"host budget share": 5 * MB}, local="127.0.0.1"
    )
    assert str(capped.mode) == "zstd:3"


def test_only_a_local_automatic_copy_without_a_budget_skips_the_measurement() -> None:
    auto, lz4 = parse_mode("auto"), parse_mode("lz4")
    assert not copy_plan.needs_measurement(auto, "127.0.0.1", {})
    assert copy_plan.needs_measurement(auto, None, {})
    assert copy_plan.needs_measurement(auto, "127.0.0.1", {"per-task max rate": 5 * MB})
    # A forced mode needs the source's support (a PostgreSQL 14 source copies uncompressed).
    assert copy_plan.needs_measurement(lz4, "127.0.0.1", {})


def test_local_address() -> None:
    from cloudmig.pg.linkprobe import local_address

    assert local_address("127.0.0.1", 5432) == "127.0.0.1"
    assert local_address("localhost", 5432) in ("127.0.0.1", "::1")
    assert local_address("192.0.2.1", 5432) is None  # TEST-NET-1: never this machine's
    assert local_address("no-such-host.invalid", 5432) is None


def test_a_budget_share_caps_the_link() -> None:
    plan = copy_plan.decide(parse_mode("auto"), PG15, BOTH, 500 * MB, {"host budget share": 10 * MB})
    assert str(plan.mode) == "zstd:1"
    assert plan.reason.startswith("host budget share 10.0 MB/s")


def test_forced_modes_and_fallbacks() -> None:
    assert str(copy_plan.decide(parse_mode("lz4"), PG15, BOTH, None).mode) == "lz4"
    old = copy_plan.decide(parse_mode("zstd"), ServerSupport(140010, frozenset()), BOTH, None)
    assert (str(old.mode), old.fallback) == (
        "none",
        "the source runs PostgreSQL 14; server-side compression needs 15 or later",
    )
    bare = copy_plan.decide(parse_mode("zstd:5"), ServerSupport(160002, frozenset()), frozenset(), None)
    assert "built without zstd; copying uncompressed" in bare.detail()
    client = copy_plan.decide(parse_mode("lz4"), PG15, frozenset({"zstd"}), None)
    assert client.fallback == "cloudmig's pg_basebackup was built without lz4"
    auto_bare = copy_plan.decide(parse_mode("auto"), ServerSupport(160002, frozenset()), BOTH, 5 * MB)
    assert str(auto_bare.mode) == "none" and auto_bare.fallback


def test_auto_uses_the_other_algorithm_when_one_is_missing() -> None:
    plan = copy_plan.decide(parse_mode("auto"), ServerSupport(150004, frozenset({"lz4"})), BOTH, 12 * MB)
    assert str(plan.mode) == "lz4" and "built without zstd" in plan.reason
    assert plan.if_link_bound is None  # no zstd to move to
    fast = copy_plan.decide(parse_mode("auto"), ServerSupport(150004, frozenset({"zstd"})), BOTH, 170 * MB)
    assert str(fast.mode) == "zstd:1" and "built without lz4" in fast.reason
    assert fast.if_cpu_bound is None  # no lz4 to move to
    client = copy_plan.decide(parse_mode("auto"), PG15, frozenset({"lz4"}), 2 * MB)
    assert str(client.mode) == "lz4" and "pg_basebackup was built without zstd" in client.reason
    neither = copy_plan.decide(parse_mode("auto"), PG15, frozenset({"gzip"}), 12 * MB)
    assert str(neither.mode) == "none"


# Bounds for a source CPU faster than the benchmark's: lz4 from 60 MB/s (the default until 2026-12-07).
LZ4_FROM_60 = copy_plan.AutoBounds.from_mb(200, 60)


def test_revise_restarts_uncompressed_only_when_clearly_better() -> None:
    plan = copy_plan.decide(parse_mode("auto"), PG15, BOTH, 100 * MB, bounds=LZ4_FROM_60)
    # Incompressible data through a compressor slower than the link: restart uncompressed.
    slow = copy_plan.Window(seconds=3, uncompressed=90 * MB, wire=88 * MB, total=2000 * MB)
    revised = copy_plan.revise(plan, slow)
    assert revised is not None and str(revised.mode) == "none" and "restarting uncompressed" in revised.reason
    # Compressing well and keeping up with the link: keep going.
    assert copy_plan.revise(plan, copy_plan.Window(3, 270 * MB, 100 * MB, 2000 * MB)) is None
    # Nearly done: a restart costs more than it saves.
    assert copy_plan.revise(plan, copy_plan.Window(3, 90 * MB, 88 * MB, 100 * MB)) is None
    # A forced mode is never revised.
    forced = copy_plan.decide(parse_mode("lz4"), PG15, BOTH, 100 * MB)
    assert copy_plan.revise(forced, slow) is None


def test_revise_moves_lz4_to_zstd_when_the_link_holds_it_back() -> None:
    plan = copy_plan.decide(parse_mode("auto"), PG15, BOTH, 100 * MB, bounds=LZ4_FROM_60)
    assert str(plan.mode) == "lz4"
    # A fast source CPU: lz4's wire runs at the link's rate (95 of 100 MB/s, ratio 2).
    link_bound = copy_plan.Window(seconds=3, uncompressed=570 * MB, wire=285 * MB, total=20_000 * MB)
    revised = copy_plan.revise(plan, link_bound)
    assert revised is not None and str(revised.mode) == "zstd:1", revised
    assert revised.if_link_bound is None and revised.requested.auto
    assert "the link is the limit; restarting with zstd:1's higher ratio" in revised.reason
    assert "95.0 MB/s on the wire" in revised.reason
    # What came before the window opened does not count: within it the wire ran at 62 % of the link.
    opened_late = copy_plan.Window(3, 570 * MB, 285 * MB, 20_000 * MB, 200 * MB, 100 * MB)
    assert (
        opened_late.wire_rate == pytest.approx(185 * MB / 3) and copy_plan.revise(plan, opened_late) is None
    )
    # The CPUs hold it back (wire at 60 % of the link): zstd would only cost more of them.
    assert copy_plan.revise(plan, copy_plan.Window(3, 360 * MB, 180 * MB, 20_000 * MB)) is None
    # Link-bound, but too near its end for a restart to pay.
    assert copy_plan.revise(plan, copy_plan.Window(3, 570 * MB, 285 * MB, 1500 * MB)) is None
    # lz4 forced, or chosen only because zstd is missing: kept.
    forced = copy_plan.decide(parse_mode("lz4"), PG15, BOTH, 100 * MB)
    assert copy_plan.revise(forced, link_bound) is None
    no_zstd = copy_plan.decide(parse_mode("auto"), PG15, frozenset({"lz4"}), 100 * MB, bounds=LZ4_FROM_60)
    assert str(no_zstd.mode) == "lz4" and copy_plan.revise(no_zstd, link_bound) is None
    # Data that does not compress through lz4 is still copied uncompressed instead.
    flat = copy_plan.revise(plan, copy_plan.Window(3, 150 * MB, 148 * MB, 20_000 * MB))
    assert flat is not None and str(flat.mode) == "none"


def test_revise_moves_zstd_to_lz4_when_its_compressor_holds_it_back() -> None:
    plan = copy_plan.decide(parse_mode("auto"), PG15, BOTH, 120 * MB)
    assert (str(plan.mode), str(plan.if_cpu_bound), plan.if_link_bound) == ("zstd:1", "lz4", None)
    # A slow source CPU: 100 MB/s of data at ratio 2.9 sends 34 MB/s over a 120 MB/s link; lz4 is
    # counted on for min(2 x 100, 120 x 2.9 / 1.9 = 183) MB/s.
    cpu_bound = copy_plan.Window(seconds=3, uncompressed=300 * MB, wire=103 * MB, total=20_000 * MB)
    revised = copy_plan.revise(plan, cpu_bound)
    assert revised is not None and str(revised.mode) == "lz4", revised
    assert revised.if_cpu_bound is None and revised.if_link_bound is None and revised.requested.auto
    assert "34.3 MB/s on the wire, well below the link's 120.0 MB/s" in revised.reason
    assert "its compressor is the limit; restarting with lz4's faster one" in revised.reason
    # The link is the limit (wire at 95 %): zstd level 1 is where it should be.
    assert copy_plan.revise(plan, copy_plan.Window(3, 990 * MB, 342 * MB, 20_000 * MB)) is None
    # Data that hardly compresses (ratio 1.2): lz4's ratio could carry no more over the link than
    # zstd level 1 moves now, and uncompressed moves more than either.
    flat = copy_plan.revise(plan, copy_plan.Window(3, 240 * MB, 200 * MB, 20_000 * MB))
    assert flat is not None and str(flat.mode) == "none", flat
    # Too near its end for a restart to pay.
    assert copy_plan.revise(plan, copy_plan.Window(3, 300 * MB, 103 * MB, 800 * MB)) is None
    # zstd forced, or chosen only because lz4 is missing: kept.
    forced = copy_plan.decide(parse_mode("zstd:1"), PG15, BOTH, 120 * MB)
    assert copy_plan.revise(forced, cpu_bound) is None
    no_lz4 = copy_plan.decide(parse_mode("auto"), PG15, frozenset({"zstd"}), 120 * MB)
    assert str(no_lz4.mode) == "zstd:1" and copy_plan.revise(no_lz4, cpu_bound) is None


def test_token_bucket_hands_out_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(1000.0, clock=lambda: now[0])
    waits = [bucket.reserve(100) for _ in range(20)]  # 2000 bytes at 1000 B/s: the last waits ~2 s
    assert waits[0] == pytest.approx(0.1 - 0.02, abs=1e-6)  # each chunk waits for its own time
    assert waits[-1] == pytest.approx(2.0 - 0.02, abs=1e-6)
    now[0] = 10.0  # idle time is not saved up as a burst (only 20 ms of slack)
    assert bucket.reserve(100) == pytest.approx(0.1 - 0.04, abs=1e-6)


def test_source_counting_charges_the_ratio() -> None:
    now = [0.0]
    bucket = TokenBucket(1000.0, clock=lambda: now[0])
    pacer = CopyPacer(bucket, "source")
    pacer.ratio = 3.0
    bucket_wait = bucket.reserve
    charged: list[float] = []
    bucket.reserve = lambda n: charged.append(n) or bucket_wait(n)  # type: ignore[method-assign]
    pacer.wait(10)
    pacer.wait(10, connection=1)  # the WAL stream is not compressed: charged as it is
    assert charged == [30.0, 10.0]
    assert CompressionMode("zstd", 2).compressed


def test_watch_shows_wire_beside_disk() -> None:
    from cloudmig.cli.watch import compression_text

    assert compression_text({"BytesDone": 10}) == ""
    text = compression_text(
        {
            "Compression": "zstd:1",
            "CompressionRequested": "auto",
            "BytesDone": 300 * 1024 * 1024,
            "WireBytes": 100 * 1024 * 1024,
            "WireRateBytesPerSecond": 12 * 1024 * 1024,
            "CompressionRatio": 3.0,
        }
    )
    assert text.startswith("zstd:1 (auto)  wire 100")
    assert "disk 300" in text and "ratio 3.0" in text


@pytest.mark.parametrize(
    "text",
    [
        "auto",
        "NONE",
        "lz4",
        "zstd",
        "zstd:1",
        "zstd:09",
        "zstd:level=22",
        "gzip",
        "zstd:0",
        "zstd:23",
        "lz4:1",
        "",
    ],
)
def test_the_setting_accepts_what_the_parameter_accepts(text: str) -> None:
    import re

    from cloudmig.settings import COPY_COMPRESSION_PATTERN

    try:
        parse_mode(text)
        valid = True
    except InvalidCompressionMode:
        valid = False
    assert bool(re.match(COPY_COMPRESSION_PATTERN, text)) == valid
