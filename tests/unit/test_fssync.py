"""A copy made durable by one syncfs per file system (pg/fssync.py), and run_basebackup's use of it:
pg_basebackup is told not to sync, the copy is synced after it exits and before the call returns,
and a failed sync fails the copy."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from cloudmig.pg import basebackup, fssync
from cloudmig.pg.runner import OsUser, PgCommandError
from cloudmig.pg.source import SourceEndpoint

needs_syncfs = pytest.mark.skipif(not fssync.syncfs_usable(), reason="syncfs needs Linux 5.8 or later")


@pytest.mark.parametrize(
    ("release", "version"),
    [("6.1.0-18-amd64", (6, 1)), ("5.10.0", (5, 10)), ("4.19.0-27-cloud-amd64", (4, 19)), ("weird", None)],
)
def test_kernel_version(release: str, version: tuple[int, int] | None) -> None:
    assert fssync.kernel_version(release) == version


@needs_syncfs
def test_one_descriptor_per_file_system_opened_on_what_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = fssync._syncfs
    monkeypatch.setattr(fssync, "_syncfs", lambda fd: (calls.append(os.fstat(fd).st_ino), real(fd)))
    not_yet = tmp_path / "incoming" / "pgdata"  # created by the copy later
    with fssync.FileSystemSync([not_yet, tmp_path, tmp_path / "other"]) as sync:
        sync.sync()
    assert calls == [tmp_path.stat().st_ino]  # one file system: one syncfs, on the nearest existing directory


class _ScriptRunner:
    """Spawns a shell script in place of pg_basebackup (the argv it was given is kept)."""

    def __init__(self, script: str) -> None:
        self.script = script
        self.argv: list[str] = []

    def run(self, *args: object, **kw: object) -> subprocess.CompletedProcess[str]:
        raise AssertionError("only spawn is used")

    def spawn(
        self,
        argv: Sequence[str | Path],
        *,
        user: OsUser | None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        self.argv = [str(a) for a in argv]
        return subprocess.Popen(["sh", "-c", self.script], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)


def _copy(tmp_path: Path, runner: _ScriptRunner, *, write_behind: float = 0.0) -> None:
    basebackup.run_basebackup(
        tmp_path / "bin",
        tmp_path / "pgdata.incoming",
        SourceEndpoint("127.0.0.1", 5432, "migratetest"),
        "cloudmig_x_1",
        passfile=tmp_path / "pass",
        user=None,
        on_progress=lambda done, total: None,
        runner=runner,
        write_behind=write_behind,
    )


def _record_syncs(monkeypatch: pytest.MonkeyPatch, marker: Path) -> list[bool]:
    """Every real syncfs is recorded as whether pg_basebackup (the script) had exited by then."""
    synced: list[bool] = []
    real = fssync._syncfs
    monkeypatch.setattr(fssync, "_syncfs", lambda fd: (synced.append(marker.exists()), real(fd)))
    return synced


@needs_syncfs
def test_the_copy_is_synced_after_pg_basebackup_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "exited"
    runner = _ScriptRunner(f"echo '16384/16384 kB (100%), 1/1 tablespace' >&2; touch {marker}")
    synced = _record_syncs(monkeypatch, marker)
    _copy(tmp_path, runner)
    assert "--no-sync" in runner.argv
    assert synced == [True]  # once, after pg_basebackup had finished


@needs_syncfs
def test_a_failed_sync_fails_the_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fd: int) -> None:
        raise OSError(5, "syncfs: Input/output error")

    monkeypatch.setattr(fssync, "_syncfs", broken)
    with pytest.raises(PgCommandError, match=r"could not be synced to disk: .*Input/output error"):
        _copy(tmp_path, _ScriptRunner("exit 0"))


def test_without_syncfs_pg_basebackup_syncs_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fssync, "syncfs_usable", lambda: False)
    monkeypatch.setattr(fssync, "_syncfs", lambda fd: pytest.fail("syncfs called"))
    runner = _ScriptRunner("exit 0")
    _copy(tmp_path, runner)
    assert "--no-sync" not in runner.argv


def test_a_failed_copy_is_not_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fssync, "_syncfs", lambda fd: pytest.fail("syncfs called"))
    with pytest.raises(PgCommandError):
        _copy(tmp_path, _ScriptRunner("echo 'pg_basebackup: error: connection refused' >&2; exit 1"))


@needs_syncfs
def test_write_behind_syncs_while_the_copy_runs_and_once_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "exited"
    runner = _ScriptRunner(f"sleep 0.6; touch {marker}")
    synced = _record_syncs(monkeypatch, marker)
    _copy(tmp_path, runner, write_behind=0.05)
    assert synced[-1] is True and synced.count(True) == 1  # the last, and only it, after the exit
    assert synced.count(False) >= 3  # during the 0.6 s: every 0.05 s plus as long as a sync took
    assert not [t for t in threading.enumerate() if t.name == "copy-write-behind"]


@needs_syncfs
def test_a_write_back_error_seen_by_write_behind_fails_the_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # syncfs reports an error once per descriptor: the sync at the end would succeed.
    calls: list[int] = []

    def first_fails(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(5, "syncfs: Input/output error")

    monkeypatch.setattr(fssync, "_syncfs", first_fails)
    with pytest.raises(PgCommandError, match=r"could not be synced to disk: .*Input/output error"):
        _copy(tmp_path, _ScriptRunner("sleep 0.3"), write_behind=0.05)
    assert len(calls) == 1  # the background stopped at the error and the end did not hide it


@needs_syncfs
def test_write_behind_stops_when_the_copy_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PgCommandError):
        _copy(tmp_path, _ScriptRunner("sleep 0.2; exit 1"), write_behind=0.05)
    assert not [t for t in threading.enumerate() if t.name == "copy-write-behind"]
