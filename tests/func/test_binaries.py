"""Finding binaries per major: server directories, pg_basebackup of the same or a newer major, and
pg_bin_dirs entries that are prefixes. Fake programs with made-up majors (40+) keep the answers
independent of what this machine has installed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from tests.support.pgcluster import DEFAULT_MAJOR, make_base_dir, os_user_for_tests

from cloudmig.pg.binaries import (
    PgBinariesNotFound,
    distribution_major,
    find_basebackup,
    find_bin_dir,
    program_major,
)

pytestmark = pytest.mark.func


def _fake(bin_dir: Path, version: str, programs: tuple[str, ...]) -> Path:
    bin_dir.mkdir(parents=True)
    for name in programs:
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\necho '{name} (PostgreSQL) {version}'\n")
        path.chmod(0o755)
    return bin_dir


SERVER = ("postgres", "initdb", "pg_ctl")


def test_a_server_directory_needs_no_pg_basebackup(tmp_path: Path) -> None:
    bin_dir = _fake(tmp_path / "41" / "bin", "41.2", SERVER)
    assert find_bin_dir(41, [bin_dir]) == bin_dir
    # A prefix holding bin/ is as good as the bin dir itself.
    assert find_bin_dir(41, [tmp_path / "41"]) == bin_dir


def test_an_incomplete_or_other_major_directory_is_passed_over(tmp_path: Path) -> None:
    _fake(tmp_path / "a", "42.0", ("postgres", "initdb"))  # no pg_ctl
    other = _fake(tmp_path / "b", "43.0", SERVER)
    with pytest.raises(PgBinariesNotFound, match=r"PostgreSQL 42 server binaries not found.*43"):
        find_bin_dir(42, [tmp_path / "a", other])


def test_find_basebackup_prefers_the_same_major_then_the_nearest_newer(tmp_path: Path) -> None:
    server = _fake(tmp_path / "s50", "50.1", SERVER)
    newest = _fake(tmp_path / "b53", "53.0", ("pg_basebackup",))
    nearer = _fake(tmp_path / "b51", "51.4", ("pg_basebackup",))
    older = _fake(tmp_path / "b49", "49.9", ("pg_basebackup",))
    dirs = [server, newest, older, nearer]
    assert find_basebackup(50, dirs) == nearer / "pg_basebackup"
    same = _fake(tmp_path / "b50", "50.0", ("pg_basebackup",))
    assert find_basebackup(50, [*dirs, same]) == same / "pg_basebackup"
    assert program_major(nearer / "pg_basebackup") == 51


def test_find_basebackup_refuses_only_older_ones(tmp_path: Path) -> None:
    older = _fake(tmp_path / "b59", "59.0", ("pg_basebackup",))
    with pytest.raises(
        PgBinariesNotFound, match=r"no pg_basebackup of PostgreSQL 60 or newer.*PostgreSQL 59"
    ):
        find_basebackup(60, [older])


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_programs_the_postgresql_user_cannot_run_are_passed_over(tmp_path: Path) -> None:
    # tmp_path is under a 0700 root directory: root runs these, the postgres OS user cannot reach them.
    user = os_user_for_tests()
    hidden = _fake(tmp_path / "b70", "70.0", ("pg_basebackup", *SERVER))
    base = make_base_dir()
    try:
        reachable = _fake(base / "b71", "71.0", ("pg_basebackup",))
        assert find_basebackup(70, [hidden, reachable]) == hidden / "pg_basebackup"
        assert find_basebackup(70, [hidden, reachable], user=user) == reachable / "pg_basebackup"
        assert find_bin_dir(70, [hidden]) == hidden
        with pytest.raises(PgBinariesNotFound, match="could not execute"):
            find_bin_dir(70, [hidden], user=user)
    finally:
        shutil.rmtree(base)


def test_the_distributions_major_is_installed() -> None:
    major = distribution_major()
    assert major is not None
    assert (find_bin_dir(major) / "pg_ctl").is_file()
    assert find_basebackup(major).parent == find_bin_dir(major)  # the distribution ships its own
    assert major == DEFAULT_MAJOR or "CLOUDMIG_TEST_PG_MAJOR" in os.environ
