"""initdb and pg_ctl, run as the PostgreSQL OS user. start/stop are idempotent."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from cloudmig.pg import compat
from cloudmig.pg.binaries import server_major
from cloudmig.pg.runner import SUBPROCESS, CommandRunner, OsUser, PgCommandError, tail

log = logging.getLogger("cloudmig.pg")

_LOCALES = ("C.UTF-8", "C")
# pg_ctl status: 3 = not running, 4 = no (accessible) data directory.
_NOT_RUNNING_CODES = (3, 4)
# How often start() reads postmaster.pid (pg_ctl -w reads it every 100 ms).
READY_POLL_SECONDS = 0.01


def initdb(
    bin_dir: Path, pgdata: Path, *, user: OsUser | None, runner: CommandRunner = SUBPROCESS, superuser: str
) -> None:
    """Create a cluster in `pgdata` (missing or empty). Local connections trust (the socket dir is
    0700), TCP rejected until the managed pg_hba.conf replaces initdb's."""
    extra = compat.initdb_flags(server_major(bin_dir))
    last: PgCommandError | None = None
    for locale in _LOCALES:
        argv: list[str | Path] = [
            bin_dir / "initdb",
            "-D",
            pgdata,
            "-U",
            superuser,
            "--auth-local=trust",
            "--auth-host=reject",
            "--encoding=UTF8",
            f"--locale={locale}",
            *extra,
        ]
        try:
            runner.run(argv, user=user, timeout=300)
            return
        except PgCommandError as exc:
            last = exc
            if "locale" not in exc.stderr.lower():
                raise
            log.warning("initdb with locale %s failed, trying the next one: %s", locale, exc.stderr)
    raise last if last is not None else RuntimeError("no locale to try")


def is_running(
    bin_dir: Path, pgdata: Path, *, user: OsUser | None, runner: CommandRunner = SUBPROCESS
) -> bool:
    try:
        runner.run([bin_dir / "pg_ctl", "status", "-D", pgdata], user=user, timeout=30)
    except PgCommandError as exc:
        if exc.returncode in _NOT_RUNNING_CODES:
            return False
        raise
    return True


def _log_tail(logfile: Path, limit: int = 3000) -> str:
    try:
        return tail(logfile.read_text(errors="replace"), limit)
    except OSError:
        return ""


def start(
    bin_dir: Path,
    pgdata: Path,
    *,
    user: OsUser | None,
    runner: CommandRunner = SUBPROCESS,
    logfile: Path,
    timeout: float = 60,
) -> None:
    """pg_ctl -w start; no error when the server already runs. The server log goes to `logfile`
    (its directory must be writable by `user`); on failure its tail is part of the error. Returns
    as soon as postmaster.pid says the new server accepts connections (pg_ctl itself looks only
    every 100 ms and then ends on its own)."""
    # Without postmaster.pid nothing runs (pg_ctl status reads the same file): a fresh copy has
    # none, and its start does not wait for one more pg_ctl.
    if (pgdata / "postmaster.pid").exists() and is_running(bin_dir, pgdata, user=user, runner=runner):
        return
    argv: list[str | Path] = [
        bin_dir / "pg_ctl",
        "start",
        "-D",
        pgdata,
        "-l",
        logfile,
        "-w",
        "-t",
        str(int(timeout)),
    ]
    launched = time.time()
    ended = threading.Event()
    failure: list[BaseException] = []

    def run_pg_ctl() -> None:
        try:
            runner.run(argv, user=user, timeout=timeout + 30)
        except BaseException as exc:
            failure.append(exc)
        finally:
            ended.set()

    threading.Thread(target=run_pg_ctl, name="pg_ctl-start", daemon=True).start()
    while not ended.wait(READY_POLL_SECONDS):
        if accepts_connections(pgdata, since=launched):
            return
    if failure:
        exc = failure[0]
        if not isinstance(exc, PgCommandError):
            raise exc
        if "another server might be running" in exc.stderr and is_running(
            bin_dir, pgdata, user=user, runner=runner
        ):
            return  # a concurrent start won the race
        log_tail = _log_tail(logfile)
        detail = f"{exc.stderr.strip()}\n--- {logfile} ---\n{log_tail}" if log_tail else exc.stderr
        raise PgCommandError(exc.command, exc.returncode, detail) from exc


def accepts_connections(pgdata: Path, *, since: float) -> bool:
    """Whether postmaster.pid names a live server started at `since` or later (not a stale file of
    an earlier one) whose status (PostgreSQL 10+) is ready, or standby (consistent, read-only)."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid, started, status = int(lines[0]), int(lines[2]), lines[7].strip()
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    # The start time has a resolution of a second (pg_ctl -w allows 2 s of clock skew too).
    return started >= int(since) - 2 and status in ("ready", "standby")


def stop(
    bin_dir: Path,
    pgdata: Path,
    *,
    user: OsUser | None,
    runner: CommandRunner = SUBPROCESS,
    mode: str = "fast",
    timeout: float = 60,
) -> None:
    """pg_ctl -w stop; no error when the server is not running (or pgdata does not exist)."""
    if mode not in ("smart", "fast", "immediate"):
        raise ValueError(f"invalid shutdown mode {mode!r}")
    if not is_running(bin_dir, pgdata, user=user, runner=runner):
        return
    argv: list[str | Path] = [
        bin_dir / "pg_ctl",
        "stop",
        "-D",
        pgdata,
        "-m",
        mode,
        "-w",
        "-t",
        str(int(timeout)),
    ]
    try:
        runner.run(argv, user=user, timeout=timeout + 30)
    except PgCommandError:
        if not is_running(bin_dir, pgdata, user=user, runner=runner):
            return
        raise


def reload(bin_dir: Path, pgdata: Path, *, user: OsUser | None, runner: CommandRunner = SUBPROCESS) -> None:
    """pg_ctl reload (SIGHUP): re-read the configuration files."""
    runner.run([bin_dir / "pg_ctl", "reload", "-D", pgdata], user=user, timeout=30)


def promote(
    bin_dir: Path,
    pgdata: Path,
    *,
    user: OsUser | None,
    runner: CommandRunner = SUBPROCESS,
    timeout: float = 60,
    wait: bool = True,
) -> None:
    """pg_ctl promote: end recovery; with `wait`, until the server accepts writes (pg_ctl does not
    notice a server that dies meanwhile: without `wait`, the caller watches, see cluster_state).
    Works on every supported major (pg_promote() only exists since 12)."""
    argv: list[str | Path] = [bin_dir / "pg_ctl", "promote", "-D", pgdata]
    argv += ["-w", "-t", str(int(timeout))] if wait else ["-W"]
    runner.run(argv, user=user, timeout=timeout + 30)


def cluster_state(
    bin_dir: Path, pgdata: Path, *, user: OsUser | None, runner: CommandRunner = SUBPROCESS
) -> str:
    """pg_control's "Database cluster state" ("in production", "in archive recovery", ...)."""
    out = runner.run(
        [bin_dir / "pg_controldata", "-D", pgdata], user=user, env={"LC_ALL": "C"}, timeout=30
    ).stdout
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Database cluster state":
            return value.strip()
    return ""
