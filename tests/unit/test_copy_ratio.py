"""The ratio a source-counting budget charges a compressed copy: bytes written into the copy's
directory (WAL left out) over the base backup's wire bytes, of the whole copy and of the last second."""

from __future__ import annotations

from pathlib import Path

from cloudmig.engine.copy_ratio import MIN_WIRE_BYTES, RatioWatch
from cloudmig.pg.files import tree_bytes


def _write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        f.write(b"\0" * size)


def _copied(directory: Path) -> int:
    # What ManagedInstance.copied_data_bytes counts in the instance's copy directory.
    return tree_bytes(directory, lengths=True, leave_out="pg_wal")


def test_copied_data_bytes_leave_the_wal_stream_out(tmp_path: Path) -> None:
    _write(tmp_path / "base" / "1" / "1259", 8192)
    _write(tmp_path / "global" / "pg_control", 100)
    _write(tmp_path / "pg_wal" / "000000010000000000000001", 16 * 1024 * 1024)
    _write(tmp_path / "base" / "1" / "pg_wal", 10)  # only the top-level pg_wal is the stream's
    assert _copied(tmp_path) == 8192 + 100 + 10
    assert _copied(tmp_path / "missing") == 0
    assert tree_bytes(tmp_path) >= 16 * 1024 * 1024 + 8192  # blocks, everything counted


def test_the_pacer_gets_the_last_seconds_ratio_and_progress_the_whole_copys(tmp_path: Path) -> None:
    now = [0.0]
    wire = [0]
    handed: list[float] = []
    watch = RatioWatch(lambda: _copied(tmp_path), lambda: wire[0], handed.append, clock=lambda: now[0])
    data = tmp_path / "base" / "5" / "16384"

    _write(data, 1_000_000)
    wire[0] = MIN_WIRE_BYTES // 2
    assert watch.sample() is None and handed == []  # too little on the wire to say

    wire[0] = 500_000
    assert watch.sample() == 2.0  # the first ratio goes to the pacer at once
    now[0] = 0.5
    _write(data, 1_000_000)
    wire[0] = 1_000_000
    assert watch.sample() is None  # within the second: the pacer keeps 2.0
    assert watch.ratio == 2.0

    now[0] = 1.2
    _write(data, 4_000_000)  # catalogs done, the table compresses 4x
    wire[0] = 1_500_000
    assert watch.sample() == 5.0  # (6 MB - 1 MB) / (1.5 MB - 0.5 MB)
    assert watch.ratio == 4.0  # 6 MB / 1.5 MB for the Progress fields
    assert handed == [2.0, 5.0]

    now[0] = 2.5
    wire[0] += 1000  # an idle link: no new ratio from a few bytes
    assert watch.sample() is None and handed == [2.0, 5.0]


def test_incompressible_data_is_charged_at_least_its_wire_bytes(tmp_path: Path) -> None:
    handed: list[float] = []
    _write(tmp_path / "base" / "1" / "2", 900_000)
    watch = RatioWatch(lambda: _copied(tmp_path), lambda: 1_000_000, handed.append, clock=lambda: 0.0)
    assert watch.sample() == 1.0 and watch.ratio == 1.0


def test_a_watch_stops_whether_or_not_it_started(tmp_path: Path) -> None:
    watch = RatioWatch(lambda: 0, lambda: 0, lambda _: None)
    watch.stop()
    started = RatioWatch(lambda: 0, lambda: 0, lambda _: None)
    started.start()
    assert started.sampling
    started.stop()
    assert not started.sampling
