"""pg_basebackup: argument list, progress parsing, and a supervised run."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import secrets
import select
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import psycopg.conninfo

from cloudmig.domain.compression import CompressionMode
from cloudmig.pg import fssync
from cloudmig.pg.compression import pg_basebackup_arg
from cloudmig.pg.runner import SUBPROCESS, CommandRunner, OsUser, PgCommandError
from cloudmig.pg.source import SourceEndpoint

# "  23456/148000 kB (15%), 0/1 tablespace" (+ " (path)" with -v); a ">" before the percentage is tolerated.
_PROGRESS_RE = re.compile(r"(\d+)/(\d+)\s+kB\s+\(>?(\d+)%\)")
_SPLIT_RE = re.compile(r"[\r\n]")
_POLL_SECONDS = 0.2
_TAIL_LINES = 40
APPLICATION_NAME = "cloudmig_basebackup"
log = logging.getLogger("cloudmig.pg")


class BasebackupStopped(PgCommandError):
    """pg_basebackup was killed because the caller asked to stop (should_stop() became true)."""


class CopyStalled(PgCommandError):
    """pg_basebackup was killed because it received nothing from the source for too long."""

    def __init__(self, reason: str) -> None:
        super().__init__("pg_basebackup", -9, reason)
        self.reason = reason


class SilenceWatch(Protocol):
    """Told when pg_basebackup reports something, and how long it has reported nothing: a copy
    from a source that answers nothing (a frozen host, a network partition) hears no error, it
    waits. `silent` may raise to end the copy (the child is killed)."""

    def heard(self) -> None: ...

    def silent(self, seconds: float) -> None: ...


def sessions_prefix(slot: str) -> str:
    """What the application_name of every copy of a task (its slot) starts with on the source:
    another task's copies are told apart by it, an earlier copy's by what follows."""
    return f"{APPLICATION_NAME}:{slot}:"


def session_name(slot: str) -> str:
    """A new copy's application_name on the source (slots are short: it stays within the 63
    characters the server keeps)."""
    return sessions_prefix(slot) + secrets.token_hex(3)


def basebackup_argv(
    bin_dir: Path,
    target: Path,
    src: SourceEndpoint,
    slot: str,
    *,
    tablespace_mapping: Mapping[str, Path] | None = None,
    max_rate_kb: int = 0,
    compression: CompressionMode | None = None,
    relay_host: str | None = None,
    sync: bool = True,
    create_slot: bool = False,
) -> list[str]:
    """Plain-format copy into `target` with WAL streamed through the physical `slot`, which exists
    unless `create_slot` (then pg_basebackup 11+ creates it, -C, on its own WAL connection).
    No -R (cloudmig writes the standby settings itself).
    `compression`: server-side compression (PostgreSQL 15+ on both ends); `relay_host`: connect to
    this address (pg/relay.py) instead, keeping the source's name for the passfile and TLS;
    `sync=False`: the caller makes the copy durable itself (pg/fssync.py)."""
    if relay_host:
        host = ["-d", psycopg.conninfo.make_conninfo(host=src.host, hostaddr=relay_host)]
    else:
        host = ["-h", src.host]
    argv = [
        os.fspath(bin_dir / "pg_basebackup"),
        "-D",
        os.fspath(target),
        *host,
        "-p",
        str(int(src.port)),
        "-U",
        src.user,
        "-X",
        "stream",
        "-S",
        slot,
        *(["-C"] if create_slot else []),
        "-c",
        "fast",
        "-P",
        "-v",
        "-w",
    ]
    if not sync:
        argv.append("--no-sync")
    if max_rate_kb > 0:
        # pg_basebackup's own throttle (kB/s; it accepts 32 kB/s to 1 GB/s). The server applies it
        # after compression: it limits the bytes sent (the wire), and the source reads ratio x that.
        argv.append(f"--max-rate={min(max(max_rate_kb, 32), 1024 * 1024)}k")
    compress = pg_basebackup_arg(compression) if compression is not None else None
    if compress:
        argv.append(compress)
    for old, new in sorted((tablespace_mapping or {}).items()):
        argv.append(f"--tablespace-mapping={_ts_escape(old)}={_ts_escape(os.fspath(new))}")
    return argv


def _ts_escape(path: str) -> str:
    return path.replace("=", "\\=")


def parse_progress(chunk: str) -> tuple[int, int] | None:
    """(done_bytes, total_bytes) of the last progress report in `chunk`, or None."""
    last = None
    for match in _PROGRESS_RE.finditer(chunk):
        last = match
    if last is None:
        return None
    done, total = int(last.group(1)) * 1024, int(last.group(2)) * 1024
    return done, max(total, done)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    # pg_basebackup -X stream forks a WAL-streaming child; it is in the same process group (spawn
    # makes the group), so kill the group or the child goes on streaming through the slot.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)


def run_basebackup(
    bin_dir: Path,
    target: Path,
    src: SourceEndpoint,
    slot: str,
    *,
    passfile: Path,
    user: OsUser | None,
    on_progress: Callable[[int, int], None],
    should_stop: Callable[[], bool] = lambda: False,
    tablespace_mapping: Mapping[str, Path] | None = None,
    max_rate_kb: int = 0,
    libpq_env: Mapping[str, str] | None = None,
    compression: CompressionMode | None = None,
    relay_host: str | None = None,
    runner: CommandRunner = SUBPROCESS,
    write_behind: float = 0.0,
    create_slot: bool = False,
    silence: SilenceWatch | None = None,
    name: str | None = None,
) -> None:
    """Run pg_basebackup as `user`, the password coming from `passfile` (0600, readable by `user`).
    Calls on_progress(done_bytes, total_bytes) for every progress report (the caller throttles).
    Raises PgCommandError (stderr tail included) on failure, BasebackupStopped when should_stop()
    turned true (the child is killed), and kills the child if on_progress raises. When it returns,
    the copy is on disk: synced by pg_basebackup, or by one syncfs per file system where that
    reports errors (pg/fssync.py) at its end and, with `write_behind` > 0, about every `write_behind`
    seconds while it runs. `silence` hears of every report and of every stretch without one.
    The copy's sessions on the source are named `name` (a new session_name(slot) by default)."""
    own_sync = fssync.syncfs_usable()
    written = [target, *(tablespace_mapping or {}).values()]
    with fssync.FileSystemSync(written if own_sync else (), write_behind=write_behind) as durable:
        _run(
            basebackup_argv(
                bin_dir,
                target,
                src,
                slot,
                tablespace_mapping=tablespace_mapping,
                max_rate_kb=max_rate_kb,
                compression=compression,
                relay_host=relay_host,
                sync=not own_sync,
                create_slot=create_slot,
            ),
            passfile=passfile,
            user=user,
            runner=runner,
            on_progress=on_progress,
            should_stop=should_stop,
            libpq_env={"PGAPPNAME": name or session_name(slot), **(libpq_env or {})},
            silence=silence,
        )
        began = time.monotonic()
        try:
            durable.sync()
        except OSError as exc:
            raise PgCommandError("pg_basebackup", -1, f"the copy could not be synced to disk: {exc}") from exc
        if own_sync:
            log.debug("copy synced to disk (syncfs) in %.3f s", time.monotonic() - began)


def _run(
    argv: list[str],
    *,
    passfile: Path,
    user: OsUser | None,
    runner: CommandRunner,
    on_progress: Callable[[int, int], None],
    should_stop: Callable[[], bool],
    libpq_env: Mapping[str, str] | None,
    silence: SilenceWatch | None = None,
) -> None:
    env = {
        "PGPASSFILE": os.fspath(passfile),
        "PGCONNECT_TIMEOUT": "10",
        **(libpq_env or {}),  # e.g. PGSSLMODE, PGSSLROOTCERT
    }
    began = heard = time.monotonic()
    proc = runner.spawn(argv, user=user, env=env)
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    lines: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    pending = ""
    try:
        while True:
            if should_stop():
                _kill(proc)
                raise BasebackupStopped("pg_basebackup", proc.returncode or -9, "stopped on request")
            ready, _, _ = select.select([fd], [], [], _POLL_SECONDS)
            if not ready:
                if silence is not None:
                    silence.silent(time.monotonic() - heard)
                continue
            data = os.read(fd, 65536)
            if not data:
                break
            heard = time.monotonic()
            if silence is not None:
                silence.heard()
            pending += data.decode("utf-8", errors="replace")
            *complete, pending = _SPLIT_RE.split(pending)
            for line in complete:
                _handle_line(line, lines, on_progress)
        if pending:
            _handle_line(pending, lines, on_progress)
        returncode = proc.wait()
        log.debug("pg_basebackup exited with %d after %.3f s", returncode, time.monotonic() - began)
    except BaseException:
        _kill(proc)
        raise
    finally:
        proc.stderr.close()
    if returncode != 0:
        raise PgCommandError("pg_basebackup", returncode, "\n".join(lines))


def _handle_line(line: str, lines: collections.deque[str], on_progress: Callable[[int, int], None]) -> None:
    if not line.strip():
        return
    progress = parse_progress(line)
    if progress is not None:
        on_progress(*progress)
    else:
        lines.append(line.rstrip())
        log.debug("%s", line.rstrip())
