"""The instance provider runs binaries only through its injected runner: with a fake one, the
lifecycle steps can be driven without PostgreSQL (what they ask for, and how they react)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cloudmig.instances.provider import LocalInstanceProvider
from cloudmig.pg.runner import OsUser, PgCommandError
from cloudmig.settings import Settings


@dataclass
class FakeRunner:
    """Answers pg_ctl and pg_controldata like a server that is promoted after `promote_after`
    looks at its control file, or that stops during its promotion."""

    promote_after: int = 2
    stops_while_promoting: bool = False
    calls: list[list[str]] = field(default_factory=list)
    looks: int = 0
    running: bool = True

    def run(
        self,
        argv: Sequence[str | Path],
        *,
        user: OsUser | None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        args = [str(a) for a in argv]
        self.calls.append([Path(args[0]).name, *args[1:]])
        program, verb = Path(args[0]).name, args[1] if len(args) > 1 else ""
        if program == "pg_ctl" and verb == "status" and not self.running:
            raise PgCommandError("pg_ctl", 3, "no server running")
        if program == "pg_ctl" and verb == "promote" and self.stops_while_promoting:
            self.running = False
        out = ""
        if program == "pg_controldata":
            self.looks += 1
            state = "in production" if self.looks > self.promote_after else "in archive recovery"
            out = (
                f"pg_control version number:            1300\nDatabase cluster state:               {state}\n"
            )
        return subprocess.CompletedProcess(args, 0, out, "")

    def spawn(self, *args: object, **kw: object) -> subprocess.Popen[bytes]:
        raise AssertionError("no long-running child here")


def _provider(tmp_path: Path, runner: FakeRunner, *, controldata: bool) -> LocalInstanceProvider:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if controldata:
        (bin_dir / "pg_controldata").write_text("")
    provider = LocalInstanceProvider(
        Settings(data_dir=tmp_path / "data", runtime_dir=tmp_path / "run"), runner
    )
    provider.user = None
    provider.bin_dir = lambda major: bin_dir  # type: ignore[method-assign]
    return provider


def test_promotion_signals_then_watches_the_control_file(tmp_path: Path) -> None:
    runner = FakeRunner(promote_after=2)
    _provider(tmp_path, runner, controldata=True).promote("pgm-aaaaaaaaaaaaaaaa", 15, timeout=5)
    promote = [c for c in runner.calls if c[:2] == ["pg_ctl", "promote"]]
    assert len(promote) == 1 and "-W" in promote[0]  # signal only: cloudmig waits itself
    assert runner.looks == 3


def test_a_server_that_stops_while_promoting_fails_at_once(tmp_path: Path) -> None:
    runner = FakeRunner(promote_after=10**6, stops_while_promoting=True)
    with pytest.raises(PgCommandError, match="stopped before its promotion completed"):
        _provider(tmp_path, runner, controldata=True).promote("pgm-aaaaaaaaaaaaaaaa", 15, timeout=30)
    assert runner.looks == 1


def test_a_build_without_pg_controldata_lets_pg_ctl_wait(tmp_path: Path) -> None:
    runner = FakeRunner()
    _provider(tmp_path, runner, controldata=False).promote("pgm-aaaaaaaaaaaaaaaa", 11, timeout=5)
    assert [c[:2] for c in runner.calls] == [["pg_ctl", "promote"]]
    assert "-w" in runner.calls[0] and runner.looks == 0
