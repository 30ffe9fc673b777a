"""pg/ctl.accepts_connections: when start() may return before pg_ctl's own 100 ms look; and when
start() asks pg_ctl status first."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from cloudmig.pg.ctl import accepts_connections, start


def _pidfile(pgdata: Path, *, pid: int, started: int, status: str | None) -> None:
    lines = [str(pid), str(pgdata), str(started), "5432", "/run/sock", "127.0.0.1", "  1234  5678"]
    if status is not None:
        lines.append(status)
    (pgdata / "postmaster.pid").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("status", ["ready   ", "standby "])
def test_a_new_live_server_that_is_ready_or_a_consistent_standby(tmp_path: Path, status: str) -> None:
    now = time.time()
    _pidfile(tmp_path, pid=os.getpid(), started=int(now), status=status)
    assert accepts_connections(tmp_path, since=now)


def test_not_yet_or_not_this_server(tmp_path: Path) -> None:
    now = time.time()
    assert not accepts_connections(tmp_path, since=now)  # no postmaster.pid yet
    _pidfile(tmp_path, pid=os.getpid(), started=int(now), status="starting")
    assert not accepts_connections(tmp_path, since=now)
    _pidfile(tmp_path, pid=os.getpid(), started=int(now), status=None)  # written before line 8
    assert not accepts_connections(tmp_path, since=now)
    # A stale file of a server that ran before this start (a crash leaves one behind).
    _pidfile(tmp_path, pid=os.getpid(), started=int(now) - 60, status="ready   ")
    assert not accepts_connections(tmp_path, since=now)
    # A fresh-looking file whose server is gone.
    dead = 2**22 + 12345  # above the default pid_max, so no process has it
    _pidfile(tmp_path, pid=dead, started=int(now), status="ready   ")
    assert not accepts_connections(tmp_path, since=now)
    (tmp_path / "postmaster.pid").write_text("garbage\n")
    assert not accepts_connections(tmp_path, since=now)


class _Runner:
    """pg_ctl as a recorder: status says a server runs, start succeeds."""

    def __init__(self) -> None:
        self.verbs: list[str] = []

    def run(self, argv: Sequence[str | Path], **kw: object) -> subprocess.CompletedProcess[str]:
        self.verbs.append(str(argv[1]))
        return subprocess.CompletedProcess([str(a) for a in argv], 0, "", "")

    def spawn(self, *args: object, **kw: object) -> subprocess.Popen[bytes]:
        raise AssertionError("not used")


def test_start_asks_pg_ctl_status_only_when_a_postmaster_pid_exists(tmp_path: Path) -> None:
    runner = _Runner()
    # A fresh copy has no postmaster.pid: nothing can run, so straight to pg_ctl start.
    start(tmp_path / "bin", tmp_path, user=None, runner=runner, logfile=tmp_path / "log", timeout=5)
    assert runner.verbs == ["start"]
    # With one (here: of a live process), pg_ctl status decides; it says a server runs.
    _pidfile(tmp_path, pid=os.getpid(), started=int(time.time()), status="ready   ")
    runner.verbs.clear()
    start(tmp_path / "bin", tmp_path, user=None, runner=runner, logfile=tmp_path / "log", timeout=5)
    assert runner.verbs == ["status"]
