"""Run PostgreSQL binaries: the only subprocess use in the project.

Binaries run with argument lists (never a shell), a minimal environment, and, when cloudmig runs as
root, as the configured non-root OS user (PostgreSQL refuses to run as root). Argument lists never
carry a secret; passwords travel through 0600 passfiles.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("cloudmig.pg")

_PR_SET_PDEATHSIG = 1
_TAIL_CHARS = 4000
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class OsUser:
    """The OS account PostgreSQL binaries run as (only when cloudmig runs as root)."""

    name: str
    uid: int
    gid: int
    home: Path


class PgCommandError(Exception):
    """A PostgreSQL binary failed (non-zero exit, timeout, or could not be started)."""

    def __init__(self, command: str, returncode: int, stderr: str) -> None:
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        detail = stderr.strip()
        text = f"{command} failed with exit code {returncode}"
        super().__init__(f"{text}: {detail}" if detail else text)


def tail(text: str, limit: int = _TAIL_CHARS) -> str:
    """The end of a (possibly long) output, cut at a line boundary when possible."""
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    newline = cut.find("\n")
    return cut[newline + 1 :] if 0 <= newline < len(cut) - 1 else cut


def base_env(user: OsUser | None) -> dict[str, str]:
    """A minimal environment: nothing of the service's own (no PG* variable, no secret) leaks."""
    env = {
        "PATH": os.environ.get("PATH", _DEFAULT_PATH) if user is None else _DEFAULT_PATH,
        "LC_ALL": "C.UTF-8",
        "LANG": "C.UTF-8",
        "TZ": os.environ.get("TZ", "UTC"),
    }
    home = str(user.home) if user is not None else os.environ.get("HOME")
    if home:
        env["HOME"] = home
    return env


def _credentials(user: OsUser | None) -> dict[str, Any]:
    if user is None:
        return {}
    euid = os.geteuid()
    if euid == 0:
        return {"user": user.uid, "group": user.gid, "extra_groups": []}
    if user.uid == euid:
        return {}
    raise RuntimeError(f"cannot run PostgreSQL binaries as {user.name}: cloudmig is not running as root")


def _default_cwd(user: OsUser | None) -> Path:
    # The child must be able to stat its working directory (initdb and pg_ctl complain otherwise).
    if user is not None and user.home.is_dir():
        return user.home
    return Path("/")


def _argv(argv: Sequence[str | Path]) -> list[str]:
    if not argv:
        raise ValueError("empty argv")
    return [os.fspath(a) for a in argv]


def run(
    argv: Sequence[str | Path],
    *,
    user: OsUser | None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a binary to completion; raise PgCommandError on a non-zero exit or a timeout."""
    args = _argv(argv)
    name = Path(args[0]).name
    full_env = base_env(user) | dict(env or {})
    log.debug("run %s (as %s)", args, user.name if user else "self")
    try:
        proc = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            env=full_env,
            cwd=cwd or _default_cwd(user),
            timeout=timeout,
            check=False,
            umask=0o077,
            **_credentials(user),
        )
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise PgCommandError(name, -1, tail(f"{err}\ntimed out after {timeout:g} s")) from None
    except OSError as exc:
        raise PgCommandError(name, -1, f"could not execute {args[0]}: {exc}") from exc
    if proc.returncode != 0:
        raise PgCommandError(name, proc.returncode, tail(proc.stderr or proc.stdout or ""))
    return proc


def _load_prctl() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl: Callable[..., int] = libc.prctl
        return prctl
    except (OSError, AttributeError):  # not Linux
        return None


_PRCTL = _load_prctl()


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    prctl = _PRCTL

    def preexec() -> None:
        # Runs in the child after setuid (a credential change clears the death signal, so the order
        # matters). The signal fires when the *thread* that forked the child exits.
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def spawn(
    argv: Sequence[str | Path],
    *,
    user: OsUser | None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running child (pg_basebackup): stderr is a pipe, stdout is discarded, and the
    child is killed by the kernel if the thread that spawned it dies."""
    args = _argv(argv)
    log.debug("spawn %s (as %s)", args, user.name if user else "self")
    try:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=base_env(user) | dict(env or {}),
            cwd=cwd or _default_cwd(user),
            umask=0o077,
            # Its own process group, so the child and whatever it forks can be killed together.
            process_group=0,
            preexec_fn=_die_with_parent(os.getpid()),
            **_credentials(user),
        )
    except OSError as exc:
        raise PgCommandError(Path(args[0]).name, -1, f"could not execute {args[0]}: {exc}") from exc


class CommandRunner(Protocol):
    """How binaries are run: injected (AppContext.runner, the instance provider) so that the engine
    can be driven with a fake one."""

    def run(
        self,
        argv: Sequence[str | Path],
        *,
        user: OsUser | None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]: ...

    def spawn(
        self,
        argv: Sequence[str | Path],
        *,
        user: OsUser | None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]: ...


class SubprocessRunner:
    """The real one: `run` and `spawn` above."""

    run = staticmethod(run)
    spawn = staticmethod(spawn)


SUBPROCESS = SubprocessRunner()
