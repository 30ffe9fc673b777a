"""pg_basebackup -P progress parsing and argument list (no subprocess)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudmig.pg.basebackup import basebackup_argv, parse_progress
from cloudmig.pg.source import SourceEndpoint

KB = 1024


@pytest.mark.parametrize(
    ("chunk", "expected"),
    [
        # -P without -v, on a terminal (\r) and through a pipe (\n); width-padded done column.
        ("     0/38451 kB (0%), 0/1 tablespace                                         \r", (0, 38451 * KB)),
        ("  23456/148000 kB (15%), 0/1 tablespace\n", (23456 * KB, 148000 * KB)),
        # -P -v appends the file being copied (truncated with "...").
        ("15360/38451 kB (39%), 0/1 tablespace (...est-yxkf3092/t/base/5/16397)", (15360 * KB, 38451 * KB)),
        (
            "38451/38451 kB (100%), 1/1 tablespace                                         ",
            (38451 * KB, 38451 * KB),
        ),
        ("1024/2048 kB (50%), 1/2 tablespaces (/tmp/x/base/1/1259)\r", (1024 * KB, 2048 * KB)),
        # Tolerated variant "(>100%)" with done above the estimate: never report done > total.
        ("2100/2048 kB (>100%), 1/1 tablespace", (2100 * KB, 2100 * KB)),
        # Several reports in one read: the last one wins.
        (
            "  100/1000 kB (10%), 0/1 tablespace\r  500/1000 kB (50%), 0/1 tablespace\r  900/1000 kB (90%), 0/1 ts",
            (900 * KB, 1000 * KB),
        ),
    ],
)
def test_parse_progress(chunk: str, expected: tuple[int, int]) -> None:
    assert parse_progress(chunk) == expected


@pytest.mark.parametrize(
    "chunk",
    [
        "",
        "pg_basebackup: initiating base backup, waiting for checkpoint to complete",
        "pg_basebackup: write-ahead log start point: 0/3000028 on timeline 1",
        "pg_basebackup: error: could not connect to server: password authentication failed",
        "38451 kB (100%)",  # --no-estimate-size: no total to report
    ],
)
def test_parse_progress_ignores_other_lines(chunk: str) -> None:
    assert parse_progress(chunk) is None


def test_basebackup_argv() -> None:
    argv = basebackup_argv(
        Path("/usr/lib/postgresql/15/bin"),
        Path("/data/instances/pgm-x/pgdata"),
        SourceEndpoint("10.0.0.5", 5432, "migratetest"),
        "cloudmig_task_7",
    )
    assert argv[0] == "/usr/lib/postgresql/15/bin/pg_basebackup"
    pairs = {
        argv[i]: argv[i + 1]
        for i in range(1, len(argv) - 1)
        if argv[i] in ("-D", "-h", "-p", "-U", "-X", "-S", "-c")
    }
    assert pairs == {
        "-D": "/data/instances/pgm-x/pgdata",
        "-h": "10.0.0.5",
        "-p": "5432",
        "-U": "migratetest",
        "-X": "stream",
        "-S": "cloudmig_task_7",
        "-c": "fast",
    }
    assert "-P" in argv and "-w" in argv
    assert "-R" not in argv and "-C" not in argv
    assert not any("password" in a.lower() for a in argv)


def test_basebackup_argv_creates_the_slot_when_asked() -> None:
    endpoint = SourceEndpoint("10.0.0.5", 5432, "migratetest")
    argv = basebackup_argv(Path("/bin"), Path("/t"), endpoint, "cloudmig_task_7", create_slot=True)
    assert argv[argv.index("-S") + 1 : argv.index("-S") + 3] == ["cloudmig_task_7", "-C"]


def test_basebackup_argv_tablespace_mapping() -> None:
    argv = basebackup_argv(
        Path("/bin"),
        Path("/t"),
        SourceEndpoint("h", 1, "u"),
        "s",
        tablespace_mapping={"/srv/ts=1": Path("/data/ts")},
    )
    assert argv[-1] == "--tablespace-mapping=/srv/ts\\=1=/data/ts"
